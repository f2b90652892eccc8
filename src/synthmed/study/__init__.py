"""Studies: a YAML spec → a plan (DAG of content-hashed stages) → an executor → one results table.

See :mod:`.spec` for the study file, :mod:`.plan` for stages and their keys, :mod:`.executors`
for running them resumably (:mod:`.scheduler` orders them, :mod:`.stage_run` runs one),
:mod:`.results` for the tidy table, :mod:`.report` for the report (opening with
:mod:`.summary`; :mod:`.browser` screenshots it).
"""

from synthmed.study.executor_local import LocalExecutor
from synthmed.study.executor_ray import RayExecutor
from synthmed.study.executors import make_executor
from synthmed.study.kinds import KINDS
from synthmed.study.plan import DONE_JSON, STAGES_DIR, Plan, Stage, make_plan, stage_key
from synthmed.study.report import SECTIONS, build_sections, write_report
from synthmed.study.results import COLUMNS, gather, write_results
from synthmed.study.run import DEMO_SPEC, StudyOutcome, run_study
from synthmed.study.spec import (
    DataSpec,
    ExecutorSpec,
    GeneratorSpec,
    PhantomSpec,
    PretrainingSpec,
    SegmenterSpec,
    StudySpec,
    build_spec,
    load_spec,
)
from synthmed.study.stage_run import clean_stale, run_stage

__all__ = [
    "COLUMNS",
    "DEMO_SPEC",
    "StudyOutcome",
    "run_study",
    "DONE_JSON",
    "KINDS",
    "SECTIONS",
    "STAGES_DIR",
    "DataSpec",
    "ExecutorSpec",
    "GeneratorSpec",
    "LocalExecutor",
    "PhantomSpec",
    "PretrainingSpec",
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
