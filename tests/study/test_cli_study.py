"""`synthmed study plan|run` as a user meets them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from synthmed.cli import app

YAML = """name: cli
data: {phantom: {cases: 3, shape: [32, 48, 48]}, size: 16}
generators: [{name: ddpm, steps: 2}]
segmenters: [{name: unet, steps: 2}]
train_sets: [real, synthetic]
"""


def test_plan_prints_every_stage_pending_and_writes_nothing(tmp_path: Path) -> None:
    spec = tmp_path / "cli.yaml"
    spec.write_text(YAML)
    result = CliRunner().invoke(app, ["study", "plan", str(spec)])
    assert result.exit_code == 0, result.output
    # 10 stages (prepare, encoder, fit, sample, fidelity, memorization + 2 × (train, evaluate)) + the counts' header
    assert result.output.count("pending") == 10 + 1 and "done" in result.output
    assert "fit-" in result.output and "evaluate-" in result.output and "encoder-" in result.output
    assert not (tmp_path / "cli").exists()  # the default study folder (the YAML's stem) is not created by plan


def test_bad_field_is_one_red_line_and_exit_2(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(YAML.replace("name: unet", "name: resnet"))
    result = subprocess.run([sys.executable, "-m", "synthmed", "study", "run", str(spec)], capture_output=True,
                            text=True)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "segmenters.0.name" in lines[0] and "'unet' or 'swin'" in lines[0]
    assert not (tmp_path / "bad").exists()
