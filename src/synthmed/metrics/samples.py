"""Sample sets as the set metrics take them: float64 feature rows, grouped by patient.

Samples of one patient (neighbouring slices, a volume's planes, a longitudinal patient's
visits) are alike, so they never stand in for each other: the set metrics take optional
``cases`` (one *patient* id per sample — a store's
:meth:`~synthmed.data.store.Store.subject_ids`, i.e. its ``subject_id``, a cross-sectional
store's case ids; ``None``: every sample is its own patient, as a generator's samples are),
and subsets of real samples are made of whole patients (:func:`case_groups`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def as_features(x: Any) -> torch.Tensor:
    """``x`` (numpy or torch, any float dtype) as a float64 CPU tensor ``[N, F]``.

    Raises:
        ValueError: ``x`` is not two-dimensional.
    """
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    t = t.detach().to("cpu", torch.float64)
    if t.ndim != 2:
        raise ValueError(f"features must be [N, F], got shape {tuple(t.shape)}")
    return t


def case_codes(cases: Any | None, n: int) -> np.ndarray:
    """int64 codes ``[n]`` of the patients of ``n`` samples (``None``: every sample its own)."""
    if cases is None:
        return np.arange(n, dtype=np.int64)
    values = np.asarray(cases)
    if values.shape != (n,):
        raise ValueError(f"cases must hold one id per sample ({n}), got shape {values.shape}")
    return np.unique(values, return_inverse=True)[1].reshape(-1).astype(np.int64)


def deal_cases(codes: np.ndarray, groups: int, seed: Any) -> list[np.ndarray]:
    """Whole patients dealt in a seeded random order, each to the group with the fewest samples
    so far (ties: the first); each group's samples in dealing order (a patient's ascending)."""
    order = np.argsort(codes, kind="stable")
    members = np.split(order, np.flatnonzero(np.diff(codes[order])) + 1) if len(codes) else []
    fill: list[list[np.ndarray]] = [[] for _ in range(groups)]
    counts = np.zeros(groups, np.int64)
    for c in np.random.default_rng(seed).permutation(len(members)):
        g = int(np.argmin(counts))
        fill[g].append(members[c])
        counts[g] += len(members[c])
    return [np.concatenate(f) if f else np.zeros(0, np.int64) for f in fill]


def case_groups(cases: Any | None, groups: int, *, n: int | None = None, size: int | None = None,
                seed: Any = 0) -> list[np.ndarray]:
    """``groups`` disjoint sets of samples, no patient in two, each of exactly ``size`` samples.

    Whole patients are dealt in a seeded random order (``seed``: anything
    ``np.random.default_rng`` takes), each to the group with the fewest samples so far; each
    group is then cut to ``size`` (default: the smallest group's size) by dropping the last
    samples dealt to it (the last patients dealt are the ones cut or left out).

    Args:
        cases: one patient id per sample, or ``None`` (every sample its own patient; give ``n``).
        groups: number of groups.
        n: number of samples when ``cases`` is ``None``.
        size: samples per group.

    Returns:
        ``groups`` ascending int64 index arrays of ``size`` samples.

    Raises:
        ValueError: a group cannot hold ``size`` samples.
    """
    codes = case_codes(cases, len(cases) if cases is not None else int(n or 0))
    dealt = deal_cases(codes, groups, seed)
    smallest = min(len(g) for g in dealt)
    size = smallest if size is None else int(size)
    if size > smallest:
        raise ValueError(f"{groups} groups of whole patients hold at most {smallest} samples each, not {size}")
    return [np.sort(g[:size]) for g in dealt]


def case_halves(cases: Any | None, *, n: int | None = None, seed: Any = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two halves of equal size with no patient in common (:func:`case_groups` with 2 groups)."""
    a, b = case_groups(cases, 2, n=n, seed=seed)
    return a, b
