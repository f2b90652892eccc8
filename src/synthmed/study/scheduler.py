"""Which pending stage of a plan runs when: the dependency-ordered dispatch every executor shares.

An executor says only how a stage is launched and awaited; the order is decided here, under
one contract for all: stages finished in an earlier run are skipped; a stage starts only when
every input is done; when a stage fails, no further stage starts, the stages already running
finish (their folders stay) and the first error is raised. Both loops return the stages they
executed, in the order they finished.

- :func:`run_in_order`: one stage at a time, in the plan's (topological) order;
- :func:`run_concurrently`: each stage as soon as its inputs are done, through a
  :class:`Launcher` (a process pool, Ray tasks), at most ``limit`` at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from synthmed.errors import SynthmedError
from synthmed.study.plan import DONE_JSON, Plan, Stage
from synthmed.study.stage_run import prepare_stages_folder

#: called as ``(stage, event)`` with event ``"start"``, ``"done"`` or ``"skip"``.
Callback = Callable[[Stage, str], None]

H = TypeVar("H")


class Launcher(Protocol[H]):
    """How a concurrent executor starts stages and learns that they ended.

    ``submit`` starts one stage (its inputs are done) and returns a handle; ``wait`` blocks
    until at least one of ``handles`` has ended and returns each ended one with its error
    (``None`` on success).
    """

    def submit(self, stage: Stage) -> H: ...

    def wait(self, handles: Collection[H]) -> list[tuple[H, BaseException | None]]: ...


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


def run_in_order(plan: Plan, out: str | Path, run: Callable[[Stage], object], *,
                 callback: Callback | None = None) -> list[Stage]:
    """Run every pending stage of ``plan`` into ``out`` one at a time, in plan order, by calling
    ``run(stage)``; return the stages executed.

    ``callback`` gets ``"skip"`` for a finished stage, ``"start"`` before and ``"done"`` after
    each stage run.

    Raises:
        whatever ``run`` raises (nothing further starts).
    """
    out = Path(out)
    prepare_stages_folder(out)
    executed = []
    for stage in plan.stages.values():
        if plan.is_done(out, stage):
            if callback:
                callback(stage, "skip")
            continue
        if callback:
            callback(stage, "start")
        run(stage)
        executed.append(stage)
        if callback:
            callback(stage, "done")
    return executed


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
    prepare_stages_folder(out)
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
