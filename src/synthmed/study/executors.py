"""A study's executor: the protocol every executor follows, and :func:`make_executor`, which builds the one a spec names.

Executors run a plan's pending stages in dependency order, skipping finished ones, each stage
into its atomic folder (:mod:`.stage_run`); which stage runs when is :mod:`.scheduler`'s.
The executors, registered by name in :mod:`.executor_registry`:

- ``local`` (:class:`~synthmed.study.executor_local.LocalExecutor`): this machine, one stage
  at a time in this process or a pool of ``workers`` processes;
- ``ray`` (:class:`~synthmed.study.executor_ray.RayExecutor`): each stage a Ray task on a cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from synthmed.config import build_config
from synthmed.study.executor_registry import executor_class
from synthmed.study.plan import Plan, Stage
from synthmed.study.scheduler import Callback
from synthmed.study.spec import ExecutorSpec


class Executor(Protocol):
    """What an executor registered in :mod:`.executor_registry` provides."""

    @classmethod
    def from_spec(cls, spec: ExecutorSpec, *, progress: bool = True) -> Executor:
        """The executor a study's ``executor`` section describes (``progress``: show progress bars
        where the executor can)."""
        ...

    def run(self, plan: Plan, out: str | Path, callback: Callback | None = None) -> list[Stage]:
        """Run every pending stage of ``plan`` into ``out``; return the stages executed (see
        :mod:`.scheduler` for the contract)."""
        ...


def make_executor(executor: ExecutorSpec | str = "local", *, workers: int | None = None,
                  progress: bool = True) -> Executor:
    """The executor a study's ``executor`` section names.

    Args:
        executor: the spec's :class:`~synthmed.study.spec.ExecutorSpec`, or just its kind
            (``local`` or ``ray``, other fields default).
        workers: overrides ``executor.workers``.
        progress: show progress bars (local, one worker only).

    Raises:
        SynthmedError: an unknown kind, or ``ray`` without Ray installed.
    """
    spec = executor if isinstance(executor, ExecutorSpec) else build_config(ExecutorSpec, "executor", kind=executor)
    if workers is not None:
        spec = build_config(ExecutorSpec, "executor", **{**spec.model_dump(), "workers": workers})
    return executor_class(spec.kind).from_spec(spec, progress=progress)
