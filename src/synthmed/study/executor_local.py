"""The local executor: a plan's stages on this machine, one at a time in this process or in a process pool.

- ``workers=1``: one stage at a time in this process (:func:`~synthmed.study.scheduler.run_in_order`);
- ``workers=N``: a ``spawn`` pool of N processes, each limited to ``cpu_count // N`` torch
  threads, progress bars off (the callback still reports), each stage submitted as soon as its
  inputs are done (:func:`~synthmed.study.scheduler.run_concurrently`).
"""

from __future__ import annotations

import os
from collections.abc import Collection
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from synthmed.errors import SynthmedError
from synthmed.parallel import process_pool, stop_workers
from synthmed.study.plan import Plan, Stage
from synthmed.study.scheduler import Callback, run_concurrently, run_in_order
from synthmed.study.stage_run import clean_stale, run_stage, run_stage_in_worker
from synthmed.study.stages import STAGE_FUNCTIONS, StageFn

if TYPE_CHECKING:
    from synthmed.study.spec import ExecutorSpec


@dataclass
class _PoolLauncher:
    """Submits stages to a process pool; each worker runs :func:`~synthmed.study.stage_run.run_stage_in_worker`."""

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

    @classmethod
    def from_spec(cls, spec: ExecutorSpec, *, progress: bool = True) -> LocalExecutor:
        """The executor of a study's ``executor`` section (``workers``; one when unset)."""
        return cls(progress=progress, workers=spec.workers or 1)

    def run(self, plan: Plan, out: str | Path, callback: Callback | None = None) -> list[Stage]:
        """Run every pending stage of ``plan`` into ``out``; return the stages executed.

        Raises:
            whatever a stage raises (its folder is not created; finished stages stay; with a
            pool, the stages already running finish first).
        """
        out = Path(out)
        if self.workers > 1:
            return self._run_pool(plan, out, callback)
        return run_in_order(plan, out, lambda stage: run_stage(plan, out, stage, progress=self.progress,
                                                               functions=self.functions), callback=callback)

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
