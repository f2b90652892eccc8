"""Run a study end to end: plan → executor → results table → report.

Both ``synthmed study run`` and ``synthmed demo`` call :func:`run_study`; a second call on a
finished study executes nothing and only rebuilds the table and the report.

**What may be written where** (:func:`guard_study`). A study folder is continued, never
replaced: running a study again into its folder runs only the stages not done yet (a
changed spec adds stages; finished ones are reused) and refreshes ``results.csv`` and the
report — this needs no ``--overwrite``. ``--overwrite`` is needed only to put a study's
``results.csv`` and report in place of *another* study's (another ``name``); even then the
stages already there are kept (they are keyed by content and reused where they match) and
nothing else is deleted. A folder that is neither empty nor a study folder (no ``stages/``)
is refused, with or without ``--overwrite``, and so is a folder that is, is inside or
contains an input (the study file, ``data.path``, fidelity weights). One process at a time
writes a study folder (``STUDY/.lock``, :class:`~synthmed.locks.FolderLock`).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from synthmed.atomic import is_empty_dir, remove_stale
from synthmed.errors import OutputExistsError
from synthmed.locks import FolderLock
from synthmed.outputs import NotOwnOutputError, check_not_input
from synthmed.study.executors import make_executor
from synthmed.study.plan import STAGES_DIR, Plan, Stage, make_plan
from synthmed.study.report import write_report
from synthmed.study.results import RESULTS_CSV, write_results
from synthmed.study.spec import ExecutorSpec, StudySpec

#: The offline demo study shipped with the package (``examples/demo.yaml`` links to it).
DEMO_SPEC = Path(__file__).with_name("demo.yaml")


@dataclass
class StudyOutcome:
    """What :func:`run_study` did and wrote."""

    plan: Plan
    executed: list[Stage]
    results: Path
    report: Path


def results_owner(out: str | Path) -> str | None:
    """The ``study`` named in ``out/results.csv`` (its first row), or ``None`` (no file, no rows)."""
    file = Path(out) / RESULTS_CSV
    try:
        with open(file, newline="", encoding="utf-8") as handle:
            row = next(csv.DictReader(handle), None)
    except (OSError, csv.Error, UnicodeDecodeError):
        return None
    return (row or {}).get("study") or None


def spec_inputs(spec: StudySpec) -> list[str]:
    """The paths a study reads: its datasets' folders and fidelity weights."""
    return [p for p in (*(data.path for data in spec.data_sections()), *spec.fidelity_weights.values()) if p]


def guard_study(spec: StudySpec, out: str | Path, *, inputs: Iterable[str | Path] = (), overwrite: bool = False) -> Path:
    """Check, before any work, that ``spec`` may run into ``out`` (see the module docstring).

    Raises:
        OutputIsInputError: ``out`` is, is inside or contains an input (``inputs`` and
            :func:`spec_inputs`).
        NotOwnOutputError: ``out`` is neither empty nor a study folder.
        OutputExistsError: ``out`` holds another study's results, without ``overwrite``.
    """
    out = Path(out)
    check_not_input(out, [*inputs, *spec_inputs(spec)])
    remove_stale(out.parent, out.name)
    if not os.path.lexists(out) or is_empty_dir(out):
        return out
    if not (out / STAGES_DIR).is_dir():
        raise NotOwnOutputError(f"{out}: not a study folder (no {STAGES_DIR}/ inside) and not empty; a study runs "
                                "into a new folder or its own; choose another --out")
    owner = results_owner(out)
    if owner is not None and owner != spec.name and not overwrite:
        raise OutputExistsError(out, f"holds the results of study {owner!r}, not {spec.name!r}; pass --overwrite to "
                                     "replace its results.csv and report (its finished stages are kept)")
    return out


def run_study(spec: StudySpec, out: str | Path, *, progress: bool = True,
              on_stage: Callable[[Stage, str], None] | None = None,
              on_plan: Callable[[Plan], None] | None = None,
              executor: ExecutorSpec | None = None, overwrite: bool = False,
              inputs: Iterable[str | Path] = ()) -> StudyOutcome:
    """Run the pending stages of ``spec`` into the study folder ``out``, then write
    ``results.csv`` (+ parquet) and ``report.md`` / ``report.html``.

    Args:
        progress: show each stage's progress bars (one local worker only).
        on_stage: called with ``(stage, event)``, event ``"start"``, ``"done"`` or ``"skip"``.
        on_plan: called with the plan once it is made, before any stage runs.
        executor: runs the stages instead of ``spec.executor`` (stage keys do not depend on it).
        overwrite: replace another study's results and report in ``out`` (:func:`guard_study`).
        inputs: more paths the study reads (e.g. its YAML file), for :func:`guard_study`.

    Raises:
        see :func:`guard_study` (before any work); LockedError: another live process is
        running a study in ``out``.
    """
    out = guard_study(spec, out, inputs=inputs, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)  # holds the source-hash cache the plan reads
    plan = make_plan(spec, out=out)
    if on_plan is not None:
        on_plan(plan)
    runner = make_executor(executor or spec.executor, progress=progress)
    with FolderLock(out, "study folder"):
        remove_stale(out, ownerless=True)  # results and report temporaries of a killed run
        executed = runner.run(plan, out, callback=on_stage)
        results = write_results(plan, out)
        _, page = write_report(out)
    return StudyOutcome(plan, list(executed), results, page)
