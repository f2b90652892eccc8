"""Concurrent executors: a local process pool (``workers=2``) and a real local Ray cluster.

Scheduling, failure and retry are checked with fake stage functions (module-level callables,
so spawned processes and Ray workers can unpickle them) that log start and end times to files;
one tiny real study (phantom → ddpm → memorization, U-Net on real → evaluate) runs through
both executors and must finish the same stages as the sequential executor would.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from synthmed.errors import SynthmedError
from synthmed.study import DONE_JSON, STAGES_DIR, LocalExecutor, Plan, build_spec, make_executor, make_plan
from synthmed.study.executor_ray import RayExecutor, stage_resources
from synthmed.study.scheduler import run_concurrently
from synthmed.study.results import write_results
from synthmed.study.stages import STAGE_FUNCTIONS

#: 9 stages: prepare → fit → sample → fidelity, memorization; prepare (+ sample) → 2 × (train → evaluate)
FAKE = {"name": "fake", "data": {"phantom": {"cases": 3, "shape": [32, 48, 48]}, "size": 16},
        "generators": [{"name": "ddpm", "steps": 2}], "segmenters": [{"name": "unet", "steps": 2}],
        "train_sets": ["real", "synthetic"], "augmentation": [False], "device": "cpu"}

#: 6 real stages, the U-Net's train (on real) independent of the generator's fit → sample chain
REAL = {"name": "real", "data": {"phantom": {"cases": 3, "shape": [32, 48, 48], "seed": 0}, "size": 16,
                                 "test_fraction": 0.34},
        "generators": [{"name": "ddpm", "steps": 2, "sample_steps": 2}], "samples": 4, "fidelity": [],
        "segmenters": [{"name": "unet", "steps": 1}], "train_sets": ["real"], "augmentation": [False],
        "device": "cpu"}


@dataclass
class Recorder:
    """A stage function logging ``{start, end}`` to ``log/<key>.json``; ``fail`` kind raises,
    ``fail_once`` kind raises on its first call only (a marker file remembers the call), and
    the two ``meet`` kinds each wait until the other has started (so they must run together)."""

    log: str
    fail: str | None = None
    fail_once: str | None = None
    meet: tuple[str, str] | None = None

    def __call__(self, stage, spec, inputs, tmp, progress) -> None:  # noqa: ANN001
        start = time.time()
        for path in inputs.values():
            assert (path / DONE_JSON).is_file(), f"{stage.name} started before its input {path.name} was done"
        assert progress is False  # no progress bars in worker processes
        (tmp / "partial.txt").write_text("half")
        if stage.kind == self.fail:
            raise RuntimeError(f"killed {stage.name}")
        marker = Path(self.log) / f"{stage.key}.failed-once"
        if stage.kind == self.fail_once and not marker.exists():
            marker.write_text("1")
            raise RuntimeError(f"first attempt of {stage.name}")
        if self.meet and stage.kind in self.meet:
            (Path(self.log) / f"{stage.kind}.started").write_text("1")
            other = Path(self.log) / f"{self.meet[1 - self.meet.index(stage.kind)]}.started"
            deadline = time.time() + 60
            while not other.exists():
                assert time.time() < deadline, f"{stage.name} ran alone: {other.stem} never started beside it"
                time.sleep(0.02)
        (tmp / "result.json").write_text("{}")
        (Path(self.log) / f"{stage.key}.json").write_text(json.dumps({"start": start, "end": time.time()}))


def _fakes(log: Path, **options: object) -> dict:
    log.mkdir(parents=True, exist_ok=True)
    recorder = Recorder(str(log), **options)  # type: ignore[arg-type]
    return {kind: recorder for kind in STAGE_FUNCTIONS}


def _times(log: Path) -> dict[str, dict[str, float]]:
    return {p.stem: json.loads(p.read_text()) for p in log.glob("*.json")}


def _assert_dependency_order(plan: Plan, times: dict[str, dict[str, float]]) -> None:
    for key, stage in plan.stages.items():
        for parent in stage.inputs:
            assert times[parent]["end"] <= times[key]["start"], f"{stage.name} started before its input ended"


def _temporaries(out: Path) -> list[str]:
    return [p.name for p in (out / STAGES_DIR).iterdir() if p.name.startswith(".")]


# -- spec and factory -------------------------------------------------------------------------------


@pytest.mark.parametrize("executor, words", [
    ({"kind": "slurm"}, ["executor.kind", "'local' or 'ray'"]),
    ({"workers": 0}, ["executor.workers", "greater than or equal to 1"]),
    ({"kind": "ray", "retries": -1}, ["executor.retries", "greater than or equal to 0"]),
    ({"kind": "ray", "resources": {"fitt": {"gpus": 1}}}, ["executor.resources", "'fitt'", "prepare", "evaluate"]),
    ({"kind": "ray", "resources": {"fit": {"gpus": -1}}}, ["executor.resources", "fit.gpus must be at least 0"]),
    ({"kind": "ray", "resources": {"fit": {"memory": 4}}}, ["executor.resources.fit.memory", "'cpus' or 'gpus'"]),
    ({"address": "auto"}, ["executor", "address is only used by kind: ray"]),
])
def test_executor_spec_errors_name_the_field_and_allowed_values(executor: dict, words: list[str]) -> None:
    with pytest.raises(SynthmedError) as info:
        build_spec({**FAKE, "executor": executor}, "s.yaml")
    for word in words:
        assert word in str(info.value)


def test_make_executor_builds_the_kind_the_spec_names() -> None:
    assert make_executor("local").workers == 1
    assert make_executor(build_spec({**FAKE, "executor": {"workers": 3}}).executor).workers == 3
    ray_spec = build_spec({**FAKE, "executor": {"kind": "ray", "address": "auto", "retries": 0, "workers": 4,
                                                "resources": {"fit": {"cpus": 4, "gpus": 1}}}}).executor
    ray_executor = make_executor(ray_spec)
    assert isinstance(ray_executor, RayExecutor)
    assert (ray_executor.address, ray_executor.retries, ray_executor.workers) == ("auto", 0, 4)
    assert ray_executor.resources == {"fit": {"cpus": 4.0, "gpus": 1.0}}


def test_stage_resources_follow_the_device_and_the_overrides() -> None:
    assert stage_resources("fit", gpus=False) == {"cpus": 1.0, "gpus": 0.0}
    assert stage_resources("fit", gpus=True) == stage_resources("train", gpus=True) == {"cpus": 1.0, "gpus": 1.0}
    assert stage_resources("sample", gpus=True)["gpus"] == 0.5
    assert stage_resources("prepare", gpus=True)["gpus"] == stage_resources("memorization", gpus=True)["gpus"] == 0
    assert stage_resources("fit", gpus=True, overrides={"fit": {"cpus": 4}}) == {"cpus": 4, "gpus": 1.0}


def test_missing_ray_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(SynthmedError, match=r"pip install 'synthmed\[ray\]'"):
        make_executor("ray")


def test_an_address_nothing_listens_on_fails_fast() -> None:
    import socket

    from synthmed.study.executor_ray import _check_reachable

    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(SynthmedError, match=f"no Ray cluster answers at 127.0.0.1:{port}"):
        _check_reachable(f"127.0.0.1:{port}", timeout=2)
    _check_reachable("auto")  # left to Ray
    _check_reachable("ray://head:10001")


def test_a_stage_reported_done_without_its_folder_is_a_shared_filesystem_error(tmp_path: Path) -> None:
    class Phantom:  # says every stage ended well but writes nothing, as a node with its own disk would
        def submit(self, stage):  # noqa: ANN001, ANN202
            return stage.key

        def wait(self, handles):  # noqa: ANN001, ANN202
            return [(next(iter(handles)), None)]

    with pytest.raises(SynthmedError, match="filesystem that every worker node shares"):
        run_concurrently(make_plan(build_spec(FAKE)), tmp_path, Phantom())


def test_cli_run_explains_and_validates_the_executor_options(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from synthmed.cli import app

    help_text = CliRunner().invoke(app, ["study", "run", "--help"], terminal_width=200).output
    for words in ("--executor", "--workers", "--address", "shares", "processes"):
        assert words in help_text
    spec = tmp_path / "s.yaml"
    spec.write_text(json.dumps(FAKE))  # JSON is YAML
    result = CliRunner().invoke(app, ["study", "run", str(spec), "--executor", "local", "--address", "auto"])
    assert isinstance(result.exception, SynthmedError)  # the CLI's main() prints it as one red line, exit 2
    assert "address is only used by kind: ray" in str(result.exception)
    assert not (tmp_path / "s").exists()


# -- local process pool ---------------------------------------------------------------------------


def test_pool_respects_dependencies_and_runs_independent_stages_together(tmp_path: Path) -> None:
    plan = make_plan(build_spec(FAKE))
    events: list[tuple[str, str]] = []
    executor = LocalExecutor(functions=_fakes(tmp_path / "log", meet=("fidelity", "memorization")), workers=2)
    ran = executor.run(plan, tmp_path / "out", callback=lambda s, e: events.append((s.key, e)))
    assert {s.key for s in ran} == set(plan.stages)
    assert all(plan.is_done(tmp_path / "out", s) for s in plan.stages.values())
    _assert_dependency_order(plan, _times(tmp_path / "log"))
    for key in plan.stages:  # the driver reports each stage's start before its end
        assert events.index((key, "start")) < events.index((key, "done"))
    # a second run skips everything
    skipped: list[str] = []
    assert executor.run(plan, tmp_path / "out", callback=lambda s, e: skipped.append(e)) == []
    assert skipped == ["skip"] * len(plan)


def test_pool_failure_raises_after_running_stages_end_and_keeps_finished_ones(tmp_path: Path) -> None:
    plan = make_plan(build_spec(FAKE))
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="killed train-"):
        LocalExecutor(functions=_fakes(tmp_path / "log", fail="train"), workers=2).run(plan, out)
    finished = set(_times(tmp_path / "log"))
    assert {k for k, v in plan.status(out).items() if v == "done"} == finished
    trains = plan.by_kind("train")
    assert not any(plan.folder(out, s).exists() for s in trains)
    assert not any(plan.folder(out, s).exists() for s in plan.by_kind("evaluate"))
    assert _temporaries(out) == []
    assert {plan.stages[k].kind for k in finished} >= {"prepare"}


# -- Ray --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[object]:
    """A real local Ray cluster of 2 CPUs, started once for this module."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


def test_ray_runs_a_plan_in_dependency_order_and_stages_together(ray_cluster: object, tmp_path: Path) -> None:
    plan = make_plan(build_spec(FAKE))
    events: list[str] = []
    executor = RayExecutor(retries=0, functions=_fakes(tmp_path / "log", meet=("fidelity", "memorization")))
    ran = executor.run(plan, tmp_path / "out", callback=lambda s, e: events.append(e))
    assert {s.key for s in ran} == set(plan.stages) and events.count("done") == len(plan)
    _assert_dependency_order(plan, _times(tmp_path / "log"))
    assert all(plan.is_done(tmp_path / "out", s) for s in plan.stages.values())


def test_ray_retries_a_stage_that_fails_once(ray_cluster: object, tmp_path: Path) -> None:
    plan = make_plan(build_spec(FAKE))
    fit = plan.by_kind("fit")[0]
    with pytest.raises(RuntimeError, match="first attempt of fit-"):
        RayExecutor(retries=0, functions=_fakes(tmp_path / "no-retry", fail_once="fit")).run(plan, tmp_path / "a")
    assert not plan.folder(tmp_path / "a", fit).exists() and plan.is_done(tmp_path / "a", plan.by_kind("prepare")[0])
    ran = RayExecutor(retries=1, functions=_fakes(tmp_path / "retry", fail_once="fit")).run(plan, tmp_path / "b")
    assert {s.key for s in ran} == set(plan.stages)
    assert (tmp_path / "retry" / f"{fit.key}.failed-once").is_file()  # the first attempt did fail
    assert _temporaries(tmp_path / "b") == []


# -- one tiny real study through both --------------------------------------------------------------


def _check_real_study(plan: Plan, out: Path, ran: list) -> pd.DataFrame:
    assert {s.key for s in ran} == set(plan.stages)  # what the sequential executor runs
    assert sorted(p.name for p in (out / STAGES_DIR).iterdir()) == sorted(s.name for s in plan.stages.values())
    assert all((plan.folder(out, s) / DONE_JSON).is_file() for s in plan.stages.values())
    table = pd.read_csv(write_results(plan, out))
    assert {"dice", "memorization/max"} <= set(table.metric)
    rows = [c for c in table.columns if c != "value"]  # which numbers, not their values (threads differ)
    return table[rows].sort_values(["metric", "region", "train_set"]).reset_index(drop=True)


@pytest.mark.slow(seconds=45)
def test_tiny_real_study_through_ray_and_a_process_pool(ray_cluster: object, tmp_path: Path) -> None:
    plan = make_plan(build_spec(REAL))
    ray_ran = RayExecutor().run(plan, tmp_path / "ray")
    pool_ran = LocalExecutor(workers=2).run(plan, tmp_path / "pool")
    pd.testing.assert_frame_equal(_check_real_study(plan, tmp_path / "ray", ray_ran),
                                  _check_real_study(plan, tmp_path / "pool", pool_ran))
