"""The offline demo: the packaged demo study (``synthmed/study/demo.yaml``, also
``examples/demo.yaml``) — phantom → prepare → diffusion and ProGAN at the ``tiny`` preset →
U-Net on real, synthetic and synthetic+real data → fidelity and memorization → report.

Every stage is written atomically and keyed by its content, so a second run reuses all of it
and only rebuilds the results table and the report.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from synthmed.study import DEMO_SPEC, StudyOutcome, load_spec, run_study
from synthmed.study.plan import Plan, Stage


def run_demo(out: str | Path, *, progress: bool = True, on_stage: Callable[[Stage, str], None] | None = None,
             on_plan: Callable[[Plan], None] | None = None, overwrite: bool = False) -> StudyOutcome:
    """Run (or finish) the demo study into ``out``; ``out/report.html`` is its report
    (``on_stage``, ``on_plan``, ``overwrite``: see :func:`~synthmed.study.run.run_study`)."""
    return run_study(load_spec(DEMO_SPEC), out, progress=progress, on_stage=on_stage, on_plan=on_plan,
                     overwrite=overwrite)
