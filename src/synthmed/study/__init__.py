"""Studies: a YAML spec → a plan (DAG of content-hashed stages) → an executor → one results table.

See :mod:`.spec` for the study file, :mod:`.plan` for stages and their keys, :mod:`.executors`
for running them resumably (:mod:`.scheduler` orders them, :mod:`.stage_run` runs one),
:mod:`.results` for the tidy table, :mod:`.report` for the report (opening with
:mod:`.summary`; :mod:`.browser` screenshots it).

Everything is imported on first use (PEP 562): the CLI's ``--help`` and a spec's validation must
not pay for torch, matplotlib and the report.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synthmed.study.executor_local import LocalExecutor
    from synthmed.study.executor_ray import RayExecutor
    from synthmed.study.executors import make_executor
    from synthmed.study.kinds import KINDS
    from synthmed.study.plan import DONE_JSON, STAGES_DIR, Plan, Stage, make_plan, stage_key
    from synthmed.study.report import OPTIONAL_SECTIONS, SECTIONS, build_sections, write_report
    from synthmed.study.results import COLUMNS, gather, write_results
    from synthmed.study.run import DEMO_SPEC, StudyOutcome, run_study
    from synthmed.study.spec import (ClassifierSpec, DataSpec, ExecutorSpec, GeneratorSpec, GradeClassifierSpec,
                                     LongitudinalSpec, PhantomSpec, PretrainingSpec, ProgressionSpec, SegmenterSpec,
                                     StudySpec, build_spec, load_spec)
    from synthmed.study.stage_run import clean_stale, run_stage

#: public name → the submodule defining it.
_HOMES = {"LocalExecutor": "executor_local", "RayExecutor": "executor_ray", "make_executor": "executors",
          "KINDS": "kinds", "DONE_JSON": "plan", "STAGES_DIR": "plan", "Plan": "plan", "Stage": "plan",
          "make_plan": "plan", "stage_key": "plan", "OPTIONAL_SECTIONS": "report", "SECTIONS": "report",
          "build_sections": "report", "write_report": "report", "COLUMNS": "results", "gather": "results",
          "write_results": "results", "DEMO_SPEC": "run", "StudyOutcome": "run", "run_study": "run",
          "ClassifierSpec": "spec", "DataSpec": "spec", "ExecutorSpec": "spec", "GeneratorSpec": "spec",
          "GradeClassifierSpec": "spec", "LongitudinalSpec": "spec", "ProgressionSpec": "spec",
          "PhantomSpec": "spec", "PretrainingSpec": "spec", "SegmenterSpec": "spec", "StudySpec": "spec",
          "build_spec": "spec", "load_spec": "spec", "clean_stale": "stage_run", "run_stage": "stage_run"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)


__all__ = [
    "COLUMNS",
    "DEMO_SPEC",
    "StudyOutcome",
    "run_study",
    "DONE_JSON",
    "KINDS",
    "OPTIONAL_SECTIONS",
    "SECTIONS",
    "STAGES_DIR",
    "ClassifierSpec",
    "DataSpec",
    "ExecutorSpec",
    "GeneratorSpec",
    "GradeClassifierSpec",
    "LongitudinalSpec",
    "LocalExecutor",
    "PhantomSpec",
    "PretrainingSpec",
    "ProgressionSpec",
    "RayExecutor",
    "Plan",
    "SegmenterSpec",
    "Stage",
    "StudySpec",
    "build_sections",
    "build_spec",
    "clean_stale",
    "gather",
    "load_spec",
    "make_executor",
    "make_plan",
    "run_stage",
    "stage_key",
    "write_report",
    "write_results",
]
