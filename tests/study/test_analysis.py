"""Relative Dice, one implementation: the study report and `synthmed segment relative` pair the same
runs and give the same numbers, and a reference that differs in more than its training data gives none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from report_html import report_tables
from tiny_stores import make_store
from typer.testing import CliRunner

from synthmed.cli import app
from synthmed.errors import SynthmedError
from synthmed.study import LocalExecutor, build_spec, make_plan, write_report, write_results
from synthmed.study.stages import STAGE_FUNCTIONS

# real segmenter trainings and evaluations on tiny stores; the generator side is faked (a made-up synthetic
# store). The pre-training curve fine-tunes for 3 steps where the segmenter trains 2: no matched reference.
SPEC = {"name": "pairs", "data": {"phantom": {"cases": 3, "shape": [32, 48, 48]}, "size": 16},
        "generators": [{"name": "ddpm", "steps": 2}], "samples": 8,
        "segmenters": [{"name": "unet", "preset": "tiny", "steps": 2, "train_overrides": {"batch": 2}}],
        "train_sets": ["real", "synthetic"], "augmentation": [False], "seeds": [0],
        "pretraining": {"subject_fractions": [0.5], "finetune_steps": 3}, "fidelity": [], "device": "cpu"}


def _functions() -> dict:
    def prepare(stage, spec, inputs, tmp, progress):  # noqa: ANN001
        make_store(tmp / "store", n=16, n_test=4, seed=3)

    def sample(stage, spec, inputs, tmp, progress):  # noqa: ANN001
        make_store(tmp / "store", n=8, n_test=0, seed=1, synthetic=True)

    def nothing(stage, spec, inputs, tmp, progress):  # noqa: ANN001
        (tmp / "result.json").write_text("{}")

    return {**STAGE_FUNCTIONS, "prepare": prepare, "fit": nothing, "sample": sample, "memorization": nothing}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("pairs") / "pairs"
    plan = make_plan(build_spec(SPEC))
    LocalExecutor(progress=False, functions=_functions()).run(plan, out)
    write_results(plan, out)
    return plan, out


def _relative_cli(compared: Path, reference: Path) -> dict | None:
    """`segment relative` on two evaluation JSONs: the ratios, or None when it refuses."""
    result = CliRunner().invoke(app, ["segment", "relative", str(compared), str(reference), "--json"])
    if result.exit_code == 0:
        return json.loads(result.output)
    assert isinstance(result.exception, SynthmedError), result.output
    return None


def test_report_and_cli_pair_the_same_runs_with_the_same_numbers(study) -> None:
    plan, out = study
    _, page = write_report(out, force=True)
    tables, texts = report_tables(page.read_text())
    (table,) = tables["relative-dice"]
    evaluations = {s.key: s for s in plan.by_kind("evaluate")}
    references = [k for k, s in evaluations.items() if s.labels["train_set"] == "real"]
    compared = [k for k, s in evaluations.items() if s.labels["train_set"] != "real"]
    assert len(references) == 2 and len(compared) == 2  # real on all / half the subjects; synthetic, pretrained
    for key in compared:
        labels = evaluations[key].labels
        result = plan.folder(out, evaluations[key]) / "result.json"
        ratios = {ref: _relative_cli(result, plan.folder(out, evaluations[ref]) / "result.json") for ref in references}
        matched = [r for r, v in ratios.items() if v is not None]
        rows = [row for row in table if row["train_set"] == labels["train_set"]]
        if labels["train_set"] == "synthetic":  # the real-only run on every subject, not the one on half of them
            assert matched == [k for k in references if evaluations[k].labels["subject_fraction"] == 1.0]
            (row,) = rows
            assert [row[r] for r in ("WT", "TC", "ET")] == [f"{ratios[matched[0]][r]:.4g}" for r in ("WT", "TC", "ET")]
        else:  # pretrained: fine-tuned 3 steps, its scratch counterpart trained 2
            assert matched == [] and rows == []
    note = " ".join(texts["relative-dice"])
    assert "pretrained" in note and "steps" in note


def test_an_evaluation_written_before_runs_recorded_their_settings_reads_them_from_the_run(study) -> None:
    plan, out = study
    _, page = write_report(out, force=True)
    before = report_tables(page.read_text())[0]["relative-dice"]
    for stage in plan.by_kind("evaluate"):
        path = plan.folder(out, stage) / "result.json"
        result = json.loads(path.read_text())
        path.write_text(json.dumps({k: v for k, v in result.items() if k not in ("model", "training")}))
    _, page = write_report(out, force=True)
    assert report_tables(page.read_text())[0]["relative-dice"] == before
