"""Tumour growth of the longitudinal phantom: V(t) = V0·exp(g·t), the rate g drawn from a slow/fast mixture.

Each subject draws, from its own growth stream (:func:`~.draws.growth_stream`), in this order:

1. **onset** — with probability ``onset_fraction`` its first visit (t = 0) is tumour-free; the
   tumour is there from the second visit on, on the same curve;
2. **class** — fast progressor with probability ``fast_fraction`` (default
   :data:`FAST_FRACTION`), else slow;
3. **V0** — the nominal WT volume at baseline, log-uniform in :data:`BASELINE_ML`;
4. **g** — the growth rate per month, uniform in :data:`FAST_RATE` or :data:`SLOW_RATE`.

The nominal volume at ``t`` months is ``min(V0·exp(g·t), MAX_ML)`` (a brain holds no more than
the cross-sectional phantom's largest tumour). Drawing every value whatever the fractions
keeps a subject's ``V0`` and ``g`` independent of ``onset_fraction``.

The class shows at baseline only through the tumour's composition (:mod:`.cue`); ``V0`` and ``g``
are drawn alike for both classes.

Calibration (``README``, "Longitudinal data"; ``benchmarks/phantom_cue.py``): the grade bins of
:mod:`synthmed.data.grades` bin the WT fraction of the subject's tumour-centre axial slice;
a sphere's central cross-section crosses the grade 1 | 2 edge (0.7 % of the 240 × 240 mm
slice) at ~6 mL and the 2 | 3 edge (1.4 %) at ~17 mL. A baseline of 1.5–3 mL is grade 1
(drawn tumours reach 2–5 mL: white-matter spread and the edema around the core); over 36
months (e.g. ``--visits 4 --interval-months 12``) a slow progressor grows by a factor
1.07–1.54 and stays below ~5 mL nominal (grade 1, rarely 2), a fast one by 21–63 and ends above 30 mL
(grade 3): two grade bins or more. Measured at the default cue strength on 32 px stores of 40
subjects (seed 0; 15 fast, 25 slow) on the 2 mm grid: the grade rose by 2 or more for 15 of 15
fast progressors over 36 months (12 of 15 over 24, 4 of 15 over 18) and for no slow one up to
72 months. ``V0`` is not larger because a baseline must stay grade 1 for a jump of two grades to
exist: in a trial (80 subjects on the 2 mm grid, two seeds), 2–3.5 mL put 2–5 of 80 baselines at
grade 2 on the phantom grid and did not make the cue clearer at 32 px.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from synthmed.errors import SynthmedError

#: Default share of fast progressors.
FAST_FRACTION = 0.4
#: Range (mL) of the baseline nominal WT volume ``V0``, drawn log-uniform.
BASELINE_ML: tuple[float, float] = (1.5, 3.0)
#: Range of the slow progressors' growth rate ``g`` (per month), drawn uniform: volume doubling in 58–350 months.
SLOW_RATE: tuple[float, float] = (0.002, 0.012)
#: Range of the fast progressors' growth rate ``g`` (per month), drawn uniform: volume doubling in 6.0–8.2 months.
FAST_RATE: tuple[float, float] = (0.085, 0.115)
#: Largest nominal WT volume (mL): the cross-sectional phantom's largest.
MAX_ML = 125.0


@dataclass(frozen=True)
class Growth:
    """One subject's tumour growth.

    Attributes:
        onset: the first visit is tumour-free.
        fast: a fast progressor (else slow).
        baseline_ml: ``V0``, the nominal WT volume at t = 0 (mL).
        rate: ``g``, per month.
    """

    onset: bool
    fast: bool
    baseline_ml: float
    rate: float

    def nominal_ml(self, months: float) -> float:
        """The nominal WT volume (mL) ``min(V0·exp(g·t), MAX_ML)`` at ``t = months`` (ignores onset)."""
        return min(self.baseline_ml * math.exp(self.rate * float(months)), MAX_ML)


def _fraction(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise SynthmedError(f"{name} must be in [0, 1], got {value}")
    return float(value)


def draw_growth(rng: np.random.Generator, *, onset_fraction: float, fast_fraction: float = FAST_FRACTION) -> Growth:
    """A subject's growth from its growth stream (the order of the draws is in the module docstring)."""
    onset_fraction = _fraction("onset_fraction", onset_fraction)
    fast_fraction = _fraction("fast_fraction", fast_fraction)
    onset = bool(rng.random() < onset_fraction)
    fast = bool(rng.random() < fast_fraction)
    baseline = math.exp(rng.uniform(math.log(BASELINE_ML[0]), math.log(BASELINE_ML[1])))
    low, high = FAST_RATE if fast else SLOW_RATE
    return Growth(onset=onset, fast=fast, baseline_ml=baseline, rate=float(rng.uniform(low, high)))
