"""The offline demo: the packaged demo study (``synthmed/study/demo.yaml``, also
``examples/demo.yaml``) — phantom → prepare → diffusion, ProGAN and StyleGAN 2 at the ``laptop``
presets → U-Net on real, synthetic and synthetic+real data → fidelity and memorization → report.

Every stage is written atomically and keyed by its content, so a second run reuses all of it
and only rebuilds the results table and the report. ``smoke=True`` runs the same study with
every step count cut to a few (:func:`smoke_spec`): it checks the whole pipeline in a minute,
and its numbers mean nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from synthmed.study import DEMO_SPEC, StudyOutcome, load_spec, run_study
from synthmed.study.plan import Plan, Stage
from synthmed.study.spec import StudySpec

#: The smoke run's step counts: generators, diffusion sampling, segmenters, domain encoder; samples per generator.
SMOKE_STEPS = {"fit": 10, "sample": 4, "train": 10, "encoder": 20, "samples": 32}


def smoke_spec(spec: StudySpec) -> StudySpec:
    """``spec`` with every training and sampling step count cut to :data:`SMOKE_STEPS` (same stages)."""
    generators = [g.model_copy(update={"steps": SMOKE_STEPS["fit"],
                                       "sample_steps": SMOKE_STEPS["sample"] if g.name == "ddpm" else g.sample_steps})
                  for g in spec.generators]
    segmenters = [s.model_copy(update={"steps": SMOKE_STEPS["train"]}) for s in spec.segmenters]
    return spec.model_copy(update={"generators": generators, "segmenters": segmenters,
                                   "encoder_steps": SMOKE_STEPS["encoder"], "samples": SMOKE_STEPS["samples"]})


def run_demo(out: str | Path, *, progress: bool = True, on_stage: Callable[[Stage, str], None] | None = None,
             on_plan: Callable[[Plan], None] | None = None, overwrite: bool = False,
             smoke: bool = False) -> StudyOutcome:
    """Run (or finish) the demo study into ``out``; ``out/report.html`` is its report
    (``on_stage``, ``on_plan``, ``overwrite``: see :func:`~synthmed.study.run.run_study`;
    ``smoke``: see the module)."""
    spec = load_spec(DEMO_SPEC)
    return run_study(smoke_spec(spec) if smoke else spec, out, progress=progress, on_stage=on_stage,
                     on_plan=on_plan, overwrite=overwrite)
