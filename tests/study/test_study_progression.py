"""A tiny study with a `progression:` section through `synthmed study run`: a longitudinal phantom (8 subjects ×
3 visits, 32 px), a StyleGAN 2 and an inline grade classifier trained a few steps; its stages, its rows in the
results table and the report's Disease progression section."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_inprocess import invoke, run
from report_html import report_tables

from synthmed.study import STAGES_DIR

YAML = """name: progression
data:
  phantom:
    shape: [24, 32, 32]
    seed: 2  # 2 of 4 training subjects start tumour-free (the grade classifier needs them); 2 fast, 2 slow in test
    longitudinal: {subjects: 8, visits: 3, onset_fraction: 0.5, fast_fraction: 0.5}
  size: 32
  test_fraction: 0.5
generators:
  - {name: stylegan2, steps: 3, train_overrides: {checkpoint_every: 3, log_every: 1, r1_interval: 2, pl_interval: 2,
     ada_interval: 1}}
samples: 4
fidelity: []
train_sets: [real]
device: cpu
progression:
  generator: stylegan2
  classifier: {steps: 4, train_overrides: {batch: 4, validate_every: 2}}
  steps: 5
  batch: 8
  k: 2
  baseline_steps: 4
  n_boot: 50
  gallery_subjects: 4
"""
SCORES = ("risk", "growth", "baseline", "risk_true_followup")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("progression")
    (root / "study.yaml").write_text(YAML)
    assert run("study", "run", str(root / "study.yaml"), "--no-progress") == 0  # in this process, shared by the module
    return root / "study"


def test_the_prepared_store_is_longitudinal(study: Path) -> None:
    from synthmed.data.store import Store

    (prepare,) = (study / STAGES_DIR).glob("prepare-*")
    samples = Store.open(prepare / "store").samples
    assert samples.subject_id.nunique() == 8 and len(samples) == 24
    assert sorted(samples.months.unique()) == [0.0, 12.0, 24.0]
    assert (samples.groupby("subject_id").split.nunique() == 1).all()  # a subject's visits stay together


def test_progression_rows_sit_in_the_tidy_table(study: Path) -> None:
    table = pd.read_csv(study / "results.csv")
    rows = table[table.metric.str.startswith("progression_")]
    assert set(rows.generator) == {"stylegan2"} and set(rows.classifier) == {"grade-resnet18"}
    assert set(rows.task) == {"grade"} and set(rows["mode"]) == {"standard"} and set(rows.seed) == {0}
    assert rows.segmenter.isna().all() and rows.region.isna().all() and set(rows.dataset) == {"phantom"}
    value = rows.set_index("metric").value
    (folder,) = (study / STAGES_DIR).glob("progression_eval-*")
    result = json.loads((folder / "result.json").read_text())
    for score in SCORES:
        auroc, (low, high) = result[f"{score}_auroc"], result[f"{score}_auroc_ci"]
        assert auroc is not None and 0 <= auroc <= 1, (score, result["skipped"])
        assert value[f"progression_{score}_auroc"] == pytest.approx(auroc)
        assert value[f"progression_{score}_auroc_ci_low"] == pytest.approx(low)
        assert value[f"progression_{score}_auroc_ci_high"] == pytest.approx(high)
    for group in ("all", "fast"):
        assert value[f"progression_followup.{group}.n"] == result["followup"][group]["n"] > 0
        for who in ("predicted", "copy_baseline"):
            dice = value[f"progression_followup.{group}.{who}.wt_dice"]
            assert dice == pytest.approx(result["followup"][group][who]["wt_dice"]) and 0 <= dice <= 1
    assert {"progression_wt_spearman.predicted", "progression_wt_spearman.copy_baseline",
            "progression_wt_interval.coverage", "progression_months"} <= set(rows.metric)
    assert value["progression_months"] == result["months"] == 24
    assert np.isfinite(value["progression_followup.all.predicted.psnr"])
    assert not table.metric.str.startswith("progression/").any()  # no fidelity-like "features/name" metrics


def test_the_evaluation_stage_holds_its_result_and_gallery(study: Path) -> None:
    (folder,) = (study / STAGES_DIR).glob("progression_eval-*")
    result = json.loads((folder / "result.json").read_text())
    assert result["run"] == "run" and result["gallery"] == "gallery.png"
    assert (folder / "gallery.png").read_bytes()[:4] == b"\x89PNG"
    assert all((folder / path).is_file() for path in result["files"].values())
    (fit,) = (study / STAGES_DIR).glob("progression_fit-*")
    assert sorted(p.name for p in (fit / "run").iterdir() if not p.name.startswith(".")) == ["latents", "run.json"]
    assert (folder / "run" / "projections").is_dir()  # the baselines were projected in the evaluation's copy


def test_report_has_the_disease_progression_section(study: Path) -> None:
    page = (study / "report.html").read_text()
    ids = re.findall(r'<h2 id="([^"]+)"', page)
    assert "progression" in ids and "classifiers" not in ids  # the inline grade classifier has no classify_eval
    assert ids.index("pretraining") + 1 == ids.index("progression")
    tables, texts = report_tables(page)
    aurocs, follow = tables["progression"]
    (row,) = aurocs
    results = pd.read_csv(study / "results.csv").set_index("metric").value
    assert row["generator"] == "stylegan2" and row["classifier"] == "grade-resnet18" and row["months"] == "24"
    risk = row["risk (predicted follow-up)"]
    assert risk == (f"{results['progression_risk_auroc']:.3f} [{results['progression_risk_auroc_ci_low']:.3f}, "
                    f"{results['progression_risk_auroc_ci_high']:.3f}]")
    assert [(r["subjects"].split()[0], r["predictor"]) for r in follow] == [
        ("all", "predicted"), ("all", "copy baseline"), ("fast", "predicted"), ("fast", "copy baseline")]
    assert follow[2]["WT Dice"] == f"{results['progression_followup.fast.predicted.wt_dice']:.4g}"
    section = page.split('id="progression"')[1].split("</section>")[0]
    alts = re.findall(r'<img src="data:image/png;base64,[^"]+" alt="([^"]+)"', section)
    assert alts == ["phantom: stylegan2, grade-resnet18: baseline | predicted | true follow-up, 24 months ahead"]
    assert "## Disease progression" in (study / "report.md").read_text()


def test_a_rerun_runs_nothing_and_the_plan_shows_the_progression_stages(
        study: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = invoke(monkeypatch, capsys, "study", "run", str(study.with_suffix(".yaml")), "--no-progress")
    assert code == 0 and re.search(r"ran 0 of \d+ stages", out), out
    code, out, _ = invoke(monkeypatch, capsys, "study", "plan", str(study.with_suffix(".yaml")))
    assert code == 0 and re.search(r"progression_fit-\w+ done stylegan2 grade-resnet18 standard", out), out
    assert re.search(r"progression_eval-\w+ done stylegan2 grade-resnet18 standard", out), out
