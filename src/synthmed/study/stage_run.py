"""Running one stage of a plan into its folder ``STUDY/stages/<kind>-<hash12>/``, atomically.

A stage fills a temporary folder that is renamed into place only after ``done.json`` is
written into it (:func:`synthmed.atomic.atomic_directory`): a stage that fails or is killed
leaves no folder, and the next run starts again at that stage. Every executor runs a stage
through :func:`run_stage` (in this process) or :func:`run_stage_in_worker` (in a worker
process or a Ray task).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from synthmed.atomic import atomic_directory
from synthmed.study.plan import DONE_JSON, STAGE_JSON, STAGES_DIR, Plan, Stage, code_version
from synthmed.study.stages import STAGE_FUNCTIONS, StageFn


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


def prepare_stages_folder(out: Path) -> None:
    """Create ``out/stages`` and remove the temporaries a killed run left there, before a run."""
    (out / STAGES_DIR).mkdir(parents=True, exist_ok=True)
    clean_stale(out)


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
