"""Fréchet distance (FD) between Gaussian fits of two feature sets, its relative and training-set
forms, and a streaming accumulator.

* **FD** — ``|mu_a - mu_b|² + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^½)`` with unbiased
  covariances; ``tr((S_a S_b)^½)`` is the sum of the square roots of the eigenvalues of
  ``S_a S_b`` (real, >= 0 in exact arithmetic: imaginary parts and negative values from
  round-off or rank deficiency are dropped). Warns when ``N <= F`` (the covariance is then
  rank-deficient and FD is biased upwards).
* **fd / fd_train** — ``fd`` is FD against the reference real samples (the held-out **test**
  patients in :func:`synthmed.evaluate.evaluate_fidelity`); ``fd_train`` is FD against the
  generator's **training** patients at the *same* reference size: the mean FD over up to 10
  disjoint subsets of whole training patients holding as many samples as the reference each
  (:func:`train_frechet_distance`). FD's finite-sample bias grows as the reference shrinks,
  so with all training samples an honest generator would show ``fd_train`` well below ``fd``
  from sample size alone. With equal sizes an honest generator has ``fd_train ≈ fd``; one
  that copies its training data has ``fd_train < fd`` (in expectation about 0.6 ``fd`` for a
  copy of a whole 80 % training split).
* **Relative FD** — ``FD(A, S_m) / FD(A, B)`` (after Woodland et al. 2024): ``A`` and ``B``
  two halves of the reference with no patient in common, ``S_m`` ``m`` synthetic samples
  drawn at random, ``m = |A| = |B|`` (halves and synthetic cut to the smallest): the same
  reference half and the same sample sizes above and below the fraction, so ~1 means
  synthetic samples are as far from these patients as other patients are. Both
  relative-FD halves and ``S_m`` are seeded. A half's slices come a few patients at a time
  (correlated), a generator's samples each from a new one, so a perfect slice generator
  scores below 1 (0.4 simulated with 10 alike slices per patient): compare generators with
  each other, not with 1.

Features are ``[N, F]`` (numpy or torch; any float dtype), computed in float64; patients as in
:mod:`synthmed.metrics.samples`.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

from synthmed.metrics.samples import as_features, case_codes, deal_cases


def frechet_from_moments(mu_a: torch.Tensor, cov_a: torch.Tensor, mu_b: torch.Tensor, cov_b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians ``N(mu_a, cov_a)`` and ``N(mu_b, cov_b)`` (float64)."""
    mu_a, mu_b = mu_a.to(torch.float64), mu_b.to(torch.float64)
    cov_a, cov_b = cov_a.to(torch.float64), cov_b.to(torch.float64)
    eig = torch.linalg.eigvals(cov_a @ cov_b)
    tr_sqrt = eig.real.clamp_min(0).sqrt().sum()
    fd = (mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * tr_sqrt
    return float(fd.clamp_min(0))


def moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean [F], unbiased covariance [F, F])`` of the rows of ``x`` ``[N, F]`` (two passes)."""
    mu = x.mean(0)
    d = x - mu
    return mu, d.T @ d / max(len(x) - 1, 1)


def _warn_rank(n: int, f: int, what: str = "FD") -> None:
    if n <= f:
        warnings.warn(f"{what}: {n} samples for {f} features: the covariance is rank-deficient and {what} is "
                      f"biased; use more than {f} samples (or a smaller feature dimension)", stacklevel=3)


def frechet_distance(a: Any, b: Any) -> float:
    """Fréchet distance between the Gaussian fits of features ``a`` ``[N, F]`` and ``b`` ``[M, F]``.

    Raises:
        ValueError: feature dimensions differ or a set has fewer than 2 samples.
    """
    a, b = as_features(a), as_features(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} and {b.shape[1]}")
    if min(len(a), len(b)) < 2:
        raise ValueError("FD needs at least 2 samples in each set")
    _warn_rank(min(len(a), len(b)), a.shape[1])
    return frechet_from_moments(*moments(a), *moments(b))



def relative_frechet_distance(real: Any, synthetic: Any, *, cases: Any | None = None, seed: int = 0
                              ) -> dict[str, float]:
    """``FD(A, S_m) / FD(A, B)``: ``A``, ``B`` halves of ``real`` with no patient in common
    (``cases``: one patient id per real sample), ``S_m`` ``m = |A| = |B|`` synthetic samples
    drawn without replacement (the halves are cut to the synthetic count if that is smaller).

    Returns:
        ``{"fd_real_real": FD(A, B), "fd_half": FD(A, S_m), "relative_fd": …,
        "relative_fd_n": m}`` (``relative_fd`` is ``inf`` when the real-real baseline is 0).

    Raises:
        ValueError: fewer than 2 patients, or halves or synthetic set of fewer than 2 samples.
    """
    real, synthetic = as_features(real), as_features(synthetic)
    codes = case_codes(cases, len(real))
    if len(np.unique(codes)) < 2:
        raise ValueError(f"needs real samples of at least 2 patients for two halves (has {len(np.unique(codes))})")
    halves = deal_cases(codes, 2, [seed, 1])
    m = min(len(halves[0]), len(halves[1]), len(synthetic))
    if m < 2:
        raise ValueError(f"needs halves and synthetic sets of at least 2 samples (has {m} per set: "
                         f"{len(real)} real samples of {len(np.unique(codes))} patients, {len(synthetic)} synthetic)")
    a, b = (torch.from_numpy(np.sort(h[:m])) for h in halves)
    j = torch.from_numpy(np.sort(np.random.default_rng([seed, 2]).choice(len(synthetic), m, replace=False)))
    base = frechet_distance(real[a], real[b])
    fd = frechet_distance(real[a], synthetic[j])
    return {"fd_real_real": base, "fd_half": fd, "relative_fd": fd / base if base > 0 else math.inf,
            "relative_fd_n": m}


def train_frechet_distance(train: Any, synthetic: Any, size: int, *, cases: Any | None = None, seed: int = 0,
                           max_subsets: int = 10) -> tuple[float, int]:
    """FD of ``synthetic`` against the training samples at a reference size of ``size`` samples.

    The mean FD over ``K`` disjoint subsets of whole training patients (``cases``) of ``size``
    samples each (:func:`case_groups`), ``K`` the most (at most ``max_subsets``) that the
    training samples fill; with fewer than ``size`` training samples, all of them (``K = 1``)
    and a warning that the sizes differ.

    Returns:
        ``(fd_train, K)``.
    """
    train = as_features(train)
    codes = case_codes(cases, len(train))
    k = max(1, min(max_subsets, len(train) // max(size, 1)))
    while True:
        dealt = deal_cases(codes, k, [seed, 3])
        if min(len(g) for g in dealt) >= size or k == 1:
            break
        k -= 1
    if len(dealt[0]) < size:
        warnings.warn(f"fd_train: {len(train)} training samples for a reference of {size}: FD against the training "
                      "patients has the larger finite-sample bias", stacklevel=2)
    values = [frechet_distance(train[torch.from_numpy(np.sort(g[:size]))], synthetic) for g in dealt]
    return float(np.mean(values)), k


class FrechetDistance(Metric):
    """Streaming FD: ``update(real, synthetic_flag)`` accumulates float64 sums; ``compute()`` → FD.

    ``update(features [B, F], real: bool)``. Memory is ``O(F²)`` whatever N is.
    """

    full_state_update = False

    def __init__(self, num_features: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.num_features = int(num_features)
        for side in ("real", "fake"):
            self.add_state(f"{side}_sum", torch.zeros(num_features, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_outer", torch.zeros(num_features, num_features, dtype=torch.float64),
                           dist_reduce_fx="sum")
            self.add_state(f"{side}_n", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, features: torch.Tensor, real: bool) -> None:  # type: ignore[override]
        x = torch.as_tensor(features).to(self.real_sum.device, torch.float64).reshape(len(features), -1)
        side = "real" if real else "fake"
        setattr(self, f"{side}_sum", getattr(self, f"{side}_sum") + x.sum(0))
        setattr(self, f"{side}_outer", getattr(self, f"{side}_outer") + x.T @ x)
        setattr(self, f"{side}_n", getattr(self, f"{side}_n") + len(x))

    def _side(self, side: str) -> tuple[torch.Tensor, torch.Tensor]:
        n = getattr(self, f"{side}_n")
        if n < 2:
            raise ValueError(f"FD needs at least 2 {side} samples, got {int(n)}")
        mu = getattr(self, f"{side}_sum") / n
        cov = (getattr(self, f"{side}_outer") - n * torch.outer(mu, mu)) / (n - 1)
        return mu, cov

    def compute(self) -> torch.Tensor:
        _warn_rank(int(min(self.real_n, self.fake_n)), self.num_features)
        return torch.tensor(frechet_from_moments(*self._side("real"), *self._side("fake")), dtype=torch.float64)
