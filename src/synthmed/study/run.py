"""Run a study end to end: plan → executor → results table → report.

Both ``synthmed study run`` and ``synthmed demo`` call :func:`run_study`; a second call on a
finished study executes nothing and only rebuilds the table and the report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from synthmed.study.executors import make_executor
from synthmed.study.plan import Plan, Stage, make_plan
from synthmed.study.report import write_report
from synthmed.study.results import write_results
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


def run_study(spec: StudySpec, out: str | Path, *, progress: bool = True,
              on_stage: Callable[[Stage, str], None] | None = None,
              executor: ExecutorSpec | None = None) -> StudyOutcome:
    """Run the pending stages of ``spec`` into the study folder ``out``, then write
    ``results.csv`` (+ parquet) and ``report.md`` / ``report.html``.

    Args:
        progress: show each stage's progress bars (one local worker only).
        on_stage: called with ``(stage, event)``, event ``"start"``, ``"done"`` or ``"skip"``.
        executor: runs the stages instead of ``spec.executor`` (stage keys do not depend on it).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)  # holds the source-hash cache the plan reads
    plan = make_plan(spec, out=out)
    runner = make_executor(executor or spec.executor, progress=progress)
    executed = runner.run(plan, out, callback=on_stage)
    results = write_results(plan, out)
    _, page = write_report(out)
    return StudyOutcome(plan, list(executed), results, page)
