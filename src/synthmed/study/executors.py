"""Executors run a plan's pending stages in dependency order, skipping finished ones.

A stage fills a temporary folder that is renamed into ``STUDY/stages/<kind>-<hash12>/`` only
after ``done.json`` is written into it (:func:`synthmed.atomic.atomic_directory`): a stage that
fails or is killed leaves no folder, and the next run starts again at that stage.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from synthmed.atomic import atomic_directory
from synthmed.study.plan import DONE_JSON, STAGE_JSON, STAGES_DIR, Plan, Stage
from synthmed.study.stages import STAGE_FUNCTIONS, StageFn

#: called as ``(stage, event)`` with event ``"start"``, ``"done"`` or ``"skip"``.
Callback = Callable[[Stage, str], None]


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
                                                 "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
                                     + "\n")
    return seconds


@dataclass
class LocalExecutor:
    """Runs stages one at a time in this process, in the plan's dependency order."""

    progress: bool = True
    functions: dict[str, StageFn] = field(default_factory=lambda: dict(STAGE_FUNCTIONS))

    def run(self, plan: Plan, out: str | Path, callback: Callback | None = None) -> list[Stage]:
        """Run every pending stage of ``plan`` into ``out``; return the stages executed.

        Raises:
            whatever a stage raises (its folder is not created; finished stages stay).
        """
        out = Path(out)
        (out / STAGES_DIR).mkdir(parents=True, exist_ok=True)
        clean_stale(out)
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


def make_executor(kind: str = "local", *, workers: int = 1, progress: bool = True) -> LocalExecutor:
    """The executor named in the spec (only ``local`` for now; it runs one stage at a time)."""
    if kind != "local":
        from synthmed.errors import SynthmedError

        raise SynthmedError(f"executor.kind must be local, got {kind!r}")
    return LocalExecutor(progress=progress)
