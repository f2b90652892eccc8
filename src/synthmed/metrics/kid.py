"""Kernel inception distance (KID): unbiased MMD² with a cubic polynomial kernel, averaged over subsets.

KID is the unbiased MMD² with the kernel ``k(x, y) = (x·y / F + 1)³`` averaged over
``subsets`` random subsets of ``subset_size`` samples of each set (default 1000, reduced to
the smaller set's size with a warning). Features ``[N, F]``, computed in float64.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from synthmed.metrics.samples import as_features


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(x·y / F + 1)³`` for all pairs: ``[N, F] × [M, F] → [N, M]``."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x: Any, y: Any) -> float:
    """Unbiased MMD² between ``x`` ``[m, F]`` and ``y`` ``[n, F]`` with :func:`polynomial_kernel`."""
    x, y = as_features(x), as_features(y)
    m, n = len(x), len(y)
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(sxx + syy - 2 * kxy.mean())


def kernel_inception_distance(
    real: Any, synthetic: Any, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float, int]:
    """KID: mean and std of :func:`mmd2_unbiased` over ``subsets`` random subsets.

    Each subset draws ``subset_size`` samples of each set without replacement (seeded); the
    size is reduced to the smaller set with a warning.

    Returns:
        ``(mean, std, subset_size_used)``.

    Raises:
        ValueError: a set has fewer than 2 samples.
    """
    real, synthetic = as_features(real), as_features(synthetic)
    size = min(subset_size, len(real), len(synthetic))
    if size < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    if size < subset_size:
        warnings.warn(f"KID: subset size reduced from {subset_size} to {size} (the smaller set); "
                      f"{subset_size} samples per set give the standard estimate", stacklevel=2)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        i = torch.from_numpy(rng.choice(len(real), size, replace=False))
        j = torch.from_numpy(rng.choice(len(synthetic), size, replace=False))
        values.append(mmd2_unbiased(real[i], synthetic[j]))
    v = np.asarray(values)
    return float(v.mean()), float(v.std()), size
