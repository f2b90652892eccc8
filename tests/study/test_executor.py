"""Local executor: dependency order, skip of finished stages, resume after a killed stage,
and one tiny real study end to end (phantom → ddpm → U-Net) with its results table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from synthmed.study import COLUMNS, DONE_JSON, STAGES_DIR, LocalExecutor, build_spec, make_plan, write_results
from synthmed.study.stages import STAGE_FUNCTIONS

TINY = {"name": "tiny", "data": {"phantom": {"cases": 3, "shape": [32, 48, 48], "seed": 0}, "size": 16,
                                 "test_fraction": 0.34},
        "generators": [{"name": "ddpm", "steps": 2, "sample_steps": 2}], "samples": 8,
        "segmenters": [{"name": "unet", "steps": 2}], "train_sets": ["real", "synthetic"],
        "augmentation": [False], "pretraining": {"subject_fractions": [0.5], "modes": ["supervised", "ssl"]},
        "encoder_steps": 2, "device": "cpu"}


def _fake_functions(log: list[str], fail: str | None = None) -> dict:
    """Stage functions that record their call and write a marker; ``fail`` kind raises half-way."""

    def make(kind: str):
        def fn(stage, spec, inputs, tmp, progress):  # noqa: ANN001
            for path in inputs.values():
                assert (path / DONE_JSON).is_file()  # inputs are finished before a stage starts
            (tmp / "partial.txt").write_text("half")
            if kind == fail:
                raise RuntimeError("killed")
            log.append(stage.key)
            (tmp / "result.json").write_text("{}")
        return fn

    return {kind: make(kind) for kind in STAGE_FUNCTIONS}


def test_second_run_executes_nothing(tmp_path: Path) -> None:
    plan = make_plan(build_spec(TINY))
    log: list[str] = []
    ran = LocalExecutor(progress=False, functions=_fake_functions(log)).run(plan, tmp_path)
    assert log == list(plan.stages) == [s.key for s in ran]
    assert all(v == "done" for v in plan.status(tmp_path).values())
    again: list[str] = []
    events: list[str] = []
    assert LocalExecutor(progress=False, functions=_fake_functions(again)).run(
        plan, tmp_path, callback=lambda s, e: events.append(e)) == []
    assert again == [] and set(events) == {"skip"}


def test_a_killed_stage_leaves_no_folder_and_the_rerun_resumes_there(tmp_path: Path) -> None:
    plan = make_plan(build_spec(TINY))
    log: list[str] = []
    with pytest.raises(RuntimeError, match="killed"):
        LocalExecutor(progress=False, functions=_fake_functions(log, fail="train")).run(plan, tmp_path)
    first_train = next(s for s in plan.stages.values() if s.kind == "train")
    assert not plan.folder(tmp_path, first_train).exists()
    assert [p.name for p in (tmp_path / STAGES_DIR).iterdir() if p.name.startswith(".")] == []  # no temporaries
    done_before = [k for k, v in plan.status(tmp_path).items() if v == "done"]
    assert done_before == log and plan.stages[log[-1]].kind != "train"
    # a temporary left by a hard kill (SIGKILL) is cleaned up by the next run
    (tmp_path / STAGES_DIR / f".deadbeef-tmp-{first_train.name}").mkdir()
    resumed: list[str] = []
    LocalExecutor(progress=False, functions=_fake_functions(resumed)).run(plan, tmp_path)
    assert resumed[0] == first_train.key and set(resumed) == set(plan.stages) - set(done_before)
    assert [p.name for p in (tmp_path / STAGES_DIR).iterdir() if p.name.startswith(".")] == []


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("study") / "tiny"
    plan = make_plan(build_spec(TINY))
    ran = LocalExecutor(progress=False).run(plan, out)
    return plan, out, ran


def test_tiny_real_study_runs_and_writes_the_results_table(tiny_study) -> None:
    plan, out, ran = tiny_study
    assert len(ran) == len(plan)
    csv = write_results(plan, out)
    table = pd.read_csv(csv)
    assert tuple(table.columns) == COLUMNS
    parquet = pd.read_parquet(out / "results.parquet")
    assert tuple(parquet.columns) == COLUMNS and len(parquet) == len(table)
    written = {p: p.stat().st_mtime_ns for p in (csv, out / "results.parquet")}
    write_results(plan, out)  # the same table: neither file is rewritten
    assert {p: p.stat().st_mtime_ns for p in written} == written
    evaluated = table[table.metric == "dice"]
    assert set(evaluated.train_set) == {"real", "synthetic", "pretrained", "pretrained-ssl"}
    assert set(evaluated.region) == {"WT", "TC", "ET"}
    assert set(evaluated[evaluated.train_set == "real"].subject_fraction) == {0.5, 1.0}
    assert set(evaluated[evaluated.train_set.str.startswith("pretrained")].subject_fraction) == {0.5}
    # the fine-tuning started from the synthetic run's weights, on half the real training subjects
    (finetune,) = [s for s in plan.by_kind("train") if s.config["train_set"] == "pretrained"]
    (synthetic,) = [s for s in plan.by_kind("train") if s.config["train_set"] == "synthetic"]
    run = json.loads((plan.folder(out, finetune) / "run" / "run.json").read_text())
    assert run["training"]["pretrain"]["source"] == str(plan.folder(out, synthetic) / "run")
    assert run["data"]["subject_fraction"] == 0.5
    # the ssl arm pre-trained on the samples' images, as long as the synthetic run, then fine-tuned
    (ssl,) = [s for s in plan.by_kind("train") if s.config["train_set"] == "pretrained-ssl"]
    (sample,) = plan.by_kind("sample")
    run = json.loads((plan.folder(out, ssl) / "run" / "run.json").read_text())
    assert run["training"]["pretrain"] == {"source": str(plan.folder(out, sample) / "store"), "kind": "store",
                                           "mode": "ssl", "steps": 2}
    pre = json.loads((plan.folder(out, ssl) / "run" / "pretrain" / "run.json").read_text())
    assert pre["kind"] == "segmenter-ssl" and pre["data"]["labels"] == "not read"
    assert run["data"]["subject_fraction"] == 0.5
    assert set(evaluated[evaluated.train_set == "synthetic"].generator) == {"ddpm"}
    assert evaluated.value.between(0, 1).all()
    assert {"domain/fd", "memorization/max"} <= set(table.metric)
    assert (table.study == "tiny").all() and (table.dataset == "phantom").all()
    record = json.loads((plan.folder(out, plan.by_kind("fit")[0]) / "stage.json").read_text())
    assert record["config"]["model"] == "ddpm"
    assert LocalExecutor(progress=False).run(plan, out) == []  # finished: nothing runs again


def test_fidelity_numbers_do_not_depend_on_scheduling(tiny_study) -> None:
    """Rerunning a fidelity stage (alone, or with its encoder) gives the same numbers."""
    plan, out, _ = tiny_study
    (fidelity,) = plan.by_kind("fidelity")
    result = plan.folder(out, fidelity) / "result.json"
    before = json.loads(result.read_text())
    shutil.rmtree(plan.folder(out, fidelity))
    assert [s.key for s in LocalExecutor(progress=False).run(plan, out)] == [fidelity.key]
    assert json.loads(result.read_text()) == before
    (encoder,) = plan.by_kind("encoder")
    assert encoder.key in fidelity.inputs
    shutil.rmtree(plan.folder(out, fidelity))
    shutil.rmtree(plan.folder(out, encoder))
    assert [s.kind for s in LocalExecutor(progress=False).run(plan, out)] == ["encoder", "fidelity"]
    assert json.loads(result.read_text()) == before
