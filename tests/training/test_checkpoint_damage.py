"""Damaged checkpoints: a corrupt file is named and the previous kept checkpoint is used (with a
warning); an unpickling refusal says the file is untrusted and never shows torch's advice."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from cli_inprocess import invoke_joined as cli

TRAIN = ["--lr", "1e-3", "--train-timesteps", "100", "--device", "cpu", "--no-progress", "--batch", "2",
         "--checkpoint-every", "1"]


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


class Exploit:
    """Unpickling this would create a file: the proof that a pickle ran code."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def run(store2d, tmp_path, monkeypatch, capsys) -> Path:
    run = tmp_path / "run"
    code, _, err = cli(monkeypatch, capsys, "generator", "train", str(store2d.path), str(run), "--steps", "2", *TRAIN)
    assert code == 0, err
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000001", "step_00000002"]
    return run


def test_corrupt_weights_fall_back_to_the_previous_checkpoint(run, store2d, tmp_path, monkeypatch, capsys):
    truncate(run / "checkpoints" / "step_00000002" / "ema.safetensors")
    code, out, err = cli(monkeypatch, capsys, "generator", "sample", str(run), str(tmp_path / "syn"), "--n", "2",
                         "--steps", "2", "--device", "cpu", "--no-progress")
    assert code == 0, err
    assert "step_00000002/ema.safetensors: corrupt or truncated" in " ".join(err.split())
    assert "step_00000001 (step 1)" in err and "checkpoint step 1" in out
    # resuming training: a damaged model file, the same fallback
    truncate(run / "checkpoints" / "step_00000002" / "model.safetensors")
    code, out, err = cli(monkeypatch, capsys, "generator", "train", str(store2d.path), str(run), "--resume",
                         "--steps", "3", *TRAIN)
    assert code == 0, err
    assert "model.safetensors: corrupt or truncated" in " ".join(err.split()) and "step 3" in out


def test_every_checkpoint_damaged_is_one_line_naming_the_file(run, tmp_path, monkeypatch, capsys):
    for step in ("step_00000001", "step_00000002"):
        (run / "checkpoints" / step / "ema.safetensors").write_bytes(b"not safetensors at all")
    code, _, err = cli(monkeypatch, capsys, "generator", "sample", str(run), str(tmp_path / "syn"), "--n", "2",
                       "--device", "cpu")
    lines = [line for line in err.splitlines() if line.strip().startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err
    assert "step_00000001/ema.safetensors: corrupt or truncated" in lines[0] and "no other kept checkpoint" in lines[0]


def test_malicious_state_is_refused_as_untrusted(run, store2d, tmp_path, monkeypatch, capsys):
    marker = tmp_path / "pwned"
    torch.save({"step": 2, "optimizers": Exploit(str(marker))}, run / "checkpoints" / "step_00000002" / "state.pt")
    code, _, err = cli(monkeypatch, capsys, "generator", "train", str(store2d.path), str(run), "--resume",
                       "--steps", "3", *TRAIN)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), err
    assert "state.pt: refused" in lines[0] and "untrusted" in lines[0]
    assert "weights_only" not in err and not marker.exists()
    assert json.loads((run / "state.json").read_text())["step"] == 2  # nothing was resumed


def test_pretrained_weights_file_that_is_a_pickle_is_untrusted(tmp_path):
    from synthmed.errors import SynthmedError
    from synthmed.features.pretrained import _read_state_dict

    marker = tmp_path / "pwned"
    torch.save({"state_dict": Exploit(str(marker))}, tmp_path / "resnet.pt")
    with pytest.raises(SynthmedError) as info:
        _read_state_dict(tmp_path / "resnet.pt")
    assert "untrusted" in str(info.value) and "weights_only" not in str(info.value) and not marker.exists()
