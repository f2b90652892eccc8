"""Executors run a plan's pending stages in dependency order, skipping finished ones.

A stage fills a temporary folder that is renamed into ``STUDY/stages/<kind>-<hash12>/`` only
after ``done.json`` is written into it (:func:`synthmed.atomic.atomic_directory`): a stage that
fails or is killed leaves no folder, and the next run starts again at that stage.

Three ways to run them, all returning the stages they executed and sharing one contract — a
stage starts only when every input is done; when a stage fails, no further stage starts, the
stages already running finish (their folders stay) and the first error is raised:

- :class:`LocalExecutor` with ``workers=1``: one stage at a time in this process;
- :class:`LocalExecutor` with ``workers=N``: a ``spawn`` pool of N processes, each limited to
  ``cpu_count // N`` torch threads, progress bars off (the callback still reports);
- :class:`~synthmed.study.executor_ray.RayExecutor`: each stage a Ray task on a cluster.

The two concurrent executors share :func:`run_concurrently` (which stages are ready, what to
do on success or failure); they differ only in how a stage is launched and awaited.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Collection
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from synthmed.atomic import atomic_directory
from synthmed.errors import SynthmedError
from synthmed.parallel import process_pool, stop_workers
from synthmed.study.plan import DONE_JSON, STAGE_JSON, STAGES_DIR, Plan, Stage, code_version
from synthmed.study.stages import STAGE_FUNCTIONS, StageFn

if TYPE_CHECKING:
    from synthmed.study.executor_ray import RayExecutor
    from synthmed.study.spec import ExecutorSpec

#: called as ``(stage, event)`` with event ``"start"``, ``"done"`` or ``"skip"``.
Callback = Callable[[Stage, str], None]

H = TypeVar("H")


def stage_record(stage: Stage) -> dict:
    """What ``stage.json`` holds: kind, key, config, inputs and labels."""
    return {"kind": stage.kind, "key": stage.key, "config": stage.config, "inputs": list(stage.inputs),
            "labels": stage.labels}


def clean_stale(out: str | Path) -> list[Path]:
    """Remove temporaries a killed run left in ``STUDY/stages`` (hidden ``.<id>-tmp-…`` folders)."""
    root = Path(out) / STAGES_DIR
    stale = [p for p in root.glob(".*-tmp-*")] if root.is_dir() else []
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


def run_stage(plan: Plan, out: str | Path, stage: Stage, *, progress: bool = True,
              functions: dict[str, StageFn] | None = None) -> float:
    """Run one stage whose inputs are done; return its seconds. The folder appears only on success."""
    fn = (functions or STAGE_FUNCTIONS)[stage.kind]
    inputs = {plan.stages[k].kind: plan.folder(out, plan.stages[k]) for k in stage.inputs}
    folder = plan.folder(out, stage)
    start = time.perf_counter()
    # a folder without done.json (written by hand or an older version) is replaced
    with atomic_directory(folder, overwrite=folder.exists()) as tmp:
        (tmp / STAGE_JSON).write_text(json.dumps(stage_record(stage), indent=2, default=str) + "\n")
        fn(stage, plan.spec, inputs, tmp, progress)
        seconds = time.perf_counter() - start
        (tmp / DONE_JSON).write_text(json.dumps({"kind": stage.kind, "key": stage.key, "seconds": seconds,
                                                 "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                                 **code_version()}) + "\n")
    return seconds


def run_stage_in_worker(plan: Plan, out: str, key: str, threads: int,
                        functions: dict[str, StageFn] | None = None) -> float:
    """:func:`run_stage` for a worker process (pool or Ray): stage ``key`` with ``threads`` torch
    threads, progress bars off; returns its seconds."""
    from synthmed.parallel import torch_threads

    with torch_threads(max(1, threads)):
        return run_stage(plan, out, plan.stages[key], progress=False, functions=functions)


class Launcher(Protocol[H]):
    """How a concurrent executor starts stages and learns that they ended.

    ``submit`` starts one stage (its inputs are done) and returns a handle; ``wait`` blocks
    until at least one of ``handles`` has ended and returns each ended one with its error
    (``None`` on success).
    """

    def submit(self, stage: Stage) -> H: ...

    def wait(self, handles: Collection[H]) -> list[tuple[H, BaseException | None]]: ...


def _prepare_folder(out: Path) -> None:
    (out / STAGES_DIR).mkdir(parents=True, exist_ok=True)
    clean_stale(out)


@dataclass
class ReadyStages:
    """Which pending stages of a plan may start: those whose inputs are all done.

    Stages finished in an earlier run count as done from the start; ``pending`` keeps the
    plan's (topological) order, so ready stages come out in that order too.
    """

    plan: Plan
    done: set[str]
    pending: list[Stage]
    running: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, plan: Plan, out: str | Path) -> ReadyStages:
        done = {k for k, s in plan.stages.items() if plan.is_done(out, s)}
        return cls(plan, done, [s for k, s in plan.stages.items() if k not in done])

    def ready(self) -> list[Stage]:
        """Pending stages not yet started whose inputs are all done."""
        return [s for s in self.pending if s.key not in self.running and all(k in self.done for k in s.inputs)]

    def start(self, stage: Stage) -> None:
        self.running.add(stage.key)

    def finish(self, stage: Stage) -> None:
        self.running.discard(stage.key)
        self.pending = [s for s in self.pending if s.key != stage.key]
        self.done.add(stage.key)

    def fail(self, stage: Stage) -> None:
        self.running.discard(stage.key)


def run_concurrently(plan: Plan, out: str | Path, launcher: Launcher[H], *, limit: int | None = None,
                     callback: Callback | None = None) -> list[Stage]:
    """Run every pending stage of ``plan`` into ``out`` through ``launcher``; return the stages
    executed, in the order they finished.

    A stage is submitted as soon as all its inputs are done, at most ``limit`` at a time (None:
    no limit; the launcher queues). ``callback`` gets ``"skip"`` for each finished stage first,
    then ``"start"`` on submission and ``"done"`` when a stage's ``done.json`` is in place.

    Raises:
        SynthmedError: a stage reported success but ``STUDY/stages/<name>/done.json`` is absent
            (the study folder is not on a filesystem the workers share).
        whatever a stage raised, once the stages still running have ended (the first error;
            finished stages stay, the failed one leaves no folder, nothing new starts).
    """
    out = Path(out)
    _prepare_folder(out)
    state = ReadyStages.of(plan, out)
    if callback:
        for key, stage in plan.stages.items():  # plan order
            if key in state.done:
                callback(stage, "skip")
    running: dict[H, Stage] = {}
    executed: list[Stage] = []
    error: BaseException | None = None
    while True:
        if error is None:
            for stage in state.ready():
                if limit is not None and len(running) >= limit:
                    break
                if callback:
                    callback(stage, "start")
                running[launcher.submit(stage)] = stage
                state.start(stage)
        if not running:
            break
        for handle, failure in launcher.wait(list(running)):
            stage = running.pop(handle)
            if failure is None and not plan.is_done(out, stage):
                failure = SynthmedError(
                    f"stage {stage.name} ended but {plan.folder(out, stage) / DONE_JSON} is missing: the study "
                    f"folder {out} must be on a filesystem that every worker node shares")
            if failure is not None:
                state.fail(stage)
                error = error or failure
                continue
            state.finish(stage)
            executed.append(stage)
            if callback:
                callback(stage, "done")
    if error is not None:
        raise error
    return executed


@dataclass
class _PoolLauncher:
    """Submits stages to a process pool; each worker runs :func:`run_stage_in_worker`."""

    pool: ProcessPoolExecutor
    plan: Plan
    out: Path
    threads: int
    functions: dict[str, StageFn]

    def submit(self, stage: Stage) -> Future[float]:
        return self.pool.submit(run_stage_in_worker, self.plan, str(self.out), stage.key, self.threads,
                                self.functions)

    def wait(self, handles: Collection[Future[float]]) -> list[tuple[Future[float], BaseException | None]]:
        finished, _ = wait(handles, return_when=FIRST_COMPLETED)
        return [(f, f.exception()) for f in finished]


@dataclass
class LocalExecutor:
    """Runs stages on this machine: one at a time in this process (``workers=1``), or up to
    ``workers`` at a time in a ``spawn`` process pool.

    With a pool, each worker gets ``max(1, cpu_count // workers)`` torch threads and runs with
    progress bars off (interleaved bars are unreadable); the callback still reports each
    stage's start and end. ``functions`` must then be picklable (module-level functions).
    """

    progress: bool = True
    functions: dict[str, StageFn] = field(default_factory=lambda: dict(STAGE_FUNCTIONS))
    workers: int = 1

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise SynthmedError(f"executor.workers must be at least 1, got {self.workers}")

    def run(self, plan: Plan, out: str | Path, callback: Callback | None = None) -> list[Stage]:
        """Run every pending stage of ``plan`` into ``out``; return the stages executed.

        Raises:
            whatever a stage raises (its folder is not created; finished stages stay; with a
            pool, the stages already running finish first).
        """
        if self.workers > 1:
            return self._run_pool(plan, Path(out), callback)
        out = Path(out)
        _prepare_folder(out)
        executed = []
        for stage in plan.stages.values():
            if plan.is_done(out, stage):
                if callback:
                    callback(stage, "skip")
                continue
            if callback:
                callback(stage, "start")
            run_stage(plan, out, stage, progress=self.progress, functions=self.functions)
            executed.append(stage)
            if callback:
                callback(stage, "done")
        return executed

    def _run_pool(self, plan: Plan, out: Path, callback: Callback | None) -> list[Stage]:
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        pool = process_pool(self.workers, threads=None)  # workers die with us, whatever kills us
        try:
            return run_concurrently(plan, out, _PoolLauncher(pool, plan, out, threads, self.functions),
                                    limit=self.workers, callback=callback)
        except BaseException:
            # interrupted (SIGINT/SIGTERM) or failed: stop the stages still running, drop their temporaries
            stop_workers(pool)
            clean_stale(out)
            raise
        finally:
            # every submitted stage has ended here; the idle workers exit on their own (waiting
            # for torch's teardown in each would add seconds and change nothing on disk)
            pool.shutdown(wait=False, cancel_futures=True)


def make_executor(executor: ExecutorSpec | str = "local", *, workers: int | None = None,
                  progress: bool = True) -> LocalExecutor | RayExecutor:
    """The executor a study's ``executor`` section names.

    Args:
        executor: the spec's :class:`~synthmed.study.spec.ExecutorSpec`, or just its kind
            (``local`` or ``ray``, other fields default).
        workers: overrides ``executor.workers``.
        progress: show progress bars (local, one worker only).

    Raises:
        SynthmedError: an unknown kind, or ``ray`` without Ray installed.
    """
    from synthmed.config import build_config
    from synthmed.study.spec import ExecutorSpec

    spec = executor if isinstance(executor, ExecutorSpec) else build_config(ExecutorSpec, "executor", kind=executor)
    if workers is not None:
        spec = build_config(ExecutorSpec, "executor", **{**spec.model_dump(), "workers": workers})
    if spec.kind == "ray":
        from synthmed.study.executor_ray import RayExecutor

        return RayExecutor(address=spec.address, workers=spec.workers, retries=spec.retries,
                           resources={k: dict(v) for k, v in spec.resources.items()})
    return LocalExecutor(progress=progress, workers=spec.workers or 1)
