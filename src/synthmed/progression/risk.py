"""Progression risk (Han et al. 2021) from grade probabilities of a baseline and its predicted follow-up.

Pure NumPy, float64. Grades are the tumour-burden grades ``0 … G − 1`` of
:mod:`synthmed.data.grades` (``G = N_GRADES = 4``).

**Class probabilities from the grade classifier.** The ``grade`` classifier
(:mod:`synthmed.classify.targets`) has ``G − 1`` sigmoid outputs in the cumulative (CORAL-style)
encoding, output ``k`` estimating ``q_{k+1} = P(grade ≥ k + 1)``. They are made monotone as
:func:`~synthmed.classify.targets.predicted_grade` does — clipped to ``[0, 1]``, then replaced by
their running minimum along the outputs, since ``P(grade ≥ k + 1) ≤ P(grade ≥ k)`` — and turned
into class probabilities with ``q_0 = 1`` and ``q_G = 0``::

    p[g] = q_g − q_{g+1},   g = 0 … G − 1

so every ``p[g] ≥ 0``, ``Σ_g p[g] = 1``, and a one-hot target row maps to a one-hot ``p``
(:func:`grade_probabilities`).

**Risk.** With ``p_b`` the class probabilities of the baseline image and ``p_f`` those of the
predicted follow-up, the risk of progressing by at least ``min_jump`` grades (the paper's 2) is

    risk = Σ_{a, b: b − a ≥ min_jump} p_b[a] · p_f[b]

(:func:`progression_risk`) — the probability of a jump of at least ``min_jump`` grades if the two
grades were drawn independently from ``p_b`` and ``p_f``. It lies in ``[0, 1]`` (it is at most
``Σ_a p_b[a] · Σ_b p_f[b] = 1``) and is 0 when the baseline is surely in one of the top
``min_jump`` grades (no grade lies ``min_jump`` above it). It is computed as
``Σ_a p_b[a] · P_f(grade ≥ a + min_jump)``.

**Fast progressor** (the ground truth, :func:`fast_progressor`): ``grade(follow-up) −
grade(baseline) ≥ min_jump``, the grades read from the masks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from synthmed.data.grades import N_GRADES

#: Grades a fast progressor rises by at least (Han et al.: a jump of two Kellgren–Lawrence grades).
MIN_JUMP = 2

__all__ = ["MIN_JUMP", "fast_progressor", "grade_probabilities", "progression_risk"]


def grade_probabilities(cumulative: Any) -> np.ndarray:
    """float64 ``[N, G]`` class probabilities of cumulative outputs ``[N, G − 1]`` (``P(grade ≥ k)``,
    ``k = 1 … G − 1``), made monotone first (the module docstring).

    Raises:
        ValueError: not ``[N, G − 1]`` for ``G = N_GRADES``, or non-finite values.
    """
    q = np.asarray(cumulative, dtype=np.float64)
    if q.ndim != 2 or q.shape[1] != N_GRADES - 1:
        raise ValueError(f"cumulative grade probabilities must be [N, {N_GRADES - 1}], got shape {q.shape}")
    if not np.isfinite(q).all():
        raise ValueError("cumulative grade probabilities must be finite")
    q = np.minimum.accumulate(np.clip(q, 0.0, 1.0), axis=1)
    full = np.concatenate([np.ones((len(q), 1)), q, np.zeros((len(q), 1))], axis=1)
    return full[:, :-1] - full[:, 1:]


def _classes(p: Any, name: str) -> np.ndarray:
    a = np.asarray(p, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] < 1:
        raise ValueError(f"{name} must be [N, G] class probabilities, got shape {a.shape}")
    if not np.isfinite(a).all() or (a < 0).any():
        raise ValueError(f"{name} must be finite and >= 0")
    return a


def progression_risk(p_baseline: Any, p_followup: Any, *, min_jump: int = MIN_JUMP) -> np.ndarray:
    """float64 ``[N]`` risks ``Σ_{b − a ≥ min_jump} p_b[a] · p_f[b]`` of class probabilities
    ``[N, G]`` of the baselines and of their predicted follow-ups (the module docstring).

    Raises:
        ValueError: shapes that differ or are not ``[N, G]``, negative or non-finite
            probabilities, or ``min_jump < 1``.
    """
    pb, pf = _classes(p_baseline, "p_baseline"), _classes(p_followup, "p_followup")
    if pb.shape != pf.shape:
        raise ValueError(f"p_baseline {pb.shape} and p_followup {pf.shape} differ in shape")
    if min_jump < 1:
        raise ValueError(f"min_jump must be >= 1, got {min_jump}")
    grades = pb.shape[1]
    # at_least[:, g] = P_f(grade >= g), g = 0 … G, padded with zeros past the top grade
    at_least = np.concatenate([np.cumsum(pf[:, ::-1], axis=1)[:, ::-1], np.zeros((len(pf), min_jump + 1))], axis=1)
    return (pb * at_least[:, min_jump : min_jump + grades]).sum(axis=1)


def fast_progressor(baseline_grade: Any, followup_grade: Any, *, min_jump: int = MIN_JUMP) -> np.ndarray:
    """bool ``[N]``: the follow-up's grade is at least ``min_jump`` above the baseline's."""
    b = np.asarray(baseline_grade, dtype=np.int64)
    f = np.asarray(followup_grade, dtype=np.int64)
    if b.shape != f.shape:
        raise ValueError(f"baseline grades {b.shape} and follow-up grades {f.shape} differ in shape")
    return (f - b) >= min_jump
