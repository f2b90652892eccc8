"""Fidelity metrics on feature vectors: Fréchet distance, KID, IS, precision/recall, density/coverage.

Every function takes features ``[N, F]`` (numpy or torch; any float dtype) and computes in
float64. The accumulators (:class:`FrechetDistance`, :class:`FeatureBank`) are torchmetrics
``Metric`` objects (``update`` / ``compute`` / ``reset``, DDP-synchronised).

Conventions:

* **Patients.** Samples of one patient (``case_id``: neighbouring slices, or a volume's
  planes) are alike, so they never stand in for each other: the set functions take optional
  ``cases`` (one id per sample; ``None``: every sample is its own patient, as a generator's
  samples are). Real-vs-real comparisons split by patient, k-NN radii skip the sample's own
  patient, and subsets of real samples are made of whole patients (:func:`case_groups`).
* **FD** — ``|mu_a - mu_b|² + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^½)`` with unbiased
  covariances; ``tr((S_a S_b)^½)`` is the sum of the square roots of the eigenvalues of
  ``S_a S_b`` (real, >= 0 in exact arithmetic: imaginary parts and negative values from
  round-off or rank deficiency are dropped). Warns when ``N <= F`` (the covariance is then
  rank-deficient and FD is biased upwards).
* **fd / fd_train** — ``fd`` is FD against the reference real samples, which
  :func:`evaluate_fidelity` takes from the held-out **test** patients; ``fd_train`` is FD
  against the generator's **training** patients at the *same* reference size: the mean FD
  over up to 10 disjoint subsets of whole training patients holding as many samples as the
  reference each (:func:`train_frechet_distance`). FD's finite-sample bias grows as the
  reference shrinks, so with all training samples an honest generator would show
  ``fd_train`` well below ``fd`` from sample size alone. With equal sizes an honest
  generator has ``fd_train ≈ fd``; one that copies its training data has ``fd_train <
  fd`` (in expectation about 0.6 ``fd`` for a copy of a whole 80 % training split).
* **Relative FD** — ``FD(A, S_m) / FD(A, B)`` (after Woodland et al. 2024): ``A`` and ``B``
  two halves of the reference with no patient in common, ``S_m`` ``m`` synthetic samples
  drawn at random, ``m = |A| = |B|`` (halves and synthetic cut to the smallest): the same
  reference half and the same sample sizes above and below the fraction, so ~1 means
  synthetic samples are as far from these patients as other patients are. Both
  relative-FD halves and ``S_m`` are seeded. A half's slices come a few patients at a time
  (correlated), a generator's samples each from a new one, so a perfect slice generator
  scores below 1 (0.4 simulated with 10 alike slices per patient): compare generators with
  each other, not with 1.
* **KID** — unbiased MMD² with the kernel ``k(x, y) = (x·y / F + 1)³`` averaged over
  ``subsets`` random subsets of ``subset_size`` samples of each set (default 1000, reduced
  to the smaller set's size with a warning).
* **IS** — ``exp(E_x KL(p(y|x) || p(y)))`` from classifier logits, mean and std over
  ``splits`` splits of a seeded shuffle of the samples (like torchmetrics, which shuffles
  unseeded): the samples are first put in a canonical order (their logits sorted), so the
  splits do not depend on the order the samples come in (real ones come patient by patient).
* **Precision / recall** (Kynkäänniemi et al. 2019, k = 3) — precision: share of
  synthetic samples inside the k-NN ball of some real sample; recall: share of real samples
  inside the k-NN ball of some synthetic sample. Ball radius = distance to the k-th nearest
  sample of the same set **from another patient** (so a real slice's ball is not shrunk to
  its own neighbouring slices; with ``cases=None``, the k-th nearest *other* sample);
  "inside" means distance <= radius.
* **Density / coverage** (Naeem et al. 2020, k = 5) — density: ``1/(k M) Σ_j #{i: y_j in
  B(x_i)}``; coverage: share of real samples whose ball holds some synthetic sample; real
  balls as above (k-th nearest sample of another patient).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

from synthmed.errors import SynthmedError


def _f64(x: Any) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    t = t.detach().to("cpu", torch.float64)
    if t.ndim != 2:
        raise ValueError(f"features must be [N, F], got shape {tuple(t.shape)}")
    return t


# ----------------------------------------------------------------------------- Fréchet distance


def frechet_from_moments(mu_a: torch.Tensor, cov_a: torch.Tensor, mu_b: torch.Tensor, cov_b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians ``N(mu_a, cov_a)`` and ``N(mu_b, cov_b)`` (float64)."""
    mu_a, mu_b = mu_a.to(torch.float64), mu_b.to(torch.float64)
    cov_a, cov_b = cov_a.to(torch.float64), cov_b.to(torch.float64)
    eig = torch.linalg.eigvals(cov_a @ cov_b)
    tr_sqrt = eig.real.clamp_min(0).sqrt().sum()
    fd = (mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * tr_sqrt
    return float(fd.clamp_min(0))


def _moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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
    a, b = _f64(a), _f64(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} and {b.shape[1]}")
    if min(len(a), len(b)) < 2:
        raise ValueError("FD needs at least 2 samples in each set")
    _warn_rank(min(len(a), len(b)), a.shape[1])
    return frechet_from_moments(*_moments(a), *_moments(b))


def _case_codes(cases: Any | None, n: int) -> np.ndarray:
    """int64 codes ``[n]`` of the patients of ``n`` samples (``None``: every sample its own)."""
    if cases is None:
        return np.arange(n, dtype=np.int64)
    values = np.asarray(cases)
    if values.shape != (n,):
        raise ValueError(f"cases must hold one id per sample ({n}), got shape {values.shape}")
    return np.unique(values, return_inverse=True)[1].reshape(-1).astype(np.int64)


def _deal(codes: np.ndarray, groups: int, seed: Any) -> list[np.ndarray]:
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
    codes = _case_codes(cases, len(cases) if cases is not None else int(n or 0))
    dealt = _deal(codes, groups, seed)
    smallest = min(len(g) for g in dealt)
    size = smallest if size is None else int(size)
    if size > smallest:
        raise ValueError(f"{groups} groups of whole patients hold at most {smallest} samples each, not {size}")
    return [np.sort(g[:size]) for g in dealt]


def case_halves(cases: Any | None, *, n: int | None = None, seed: Any = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two halves of equal size with no patient in common (:func:`case_groups` with 2 groups)."""
    a, b = case_groups(cases, 2, n=n, seed=seed)
    return a, b


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
    real, synthetic = _f64(real), _f64(synthetic)
    codes = _case_codes(cases, len(real))
    if len(np.unique(codes)) < 2:
        raise ValueError(f"needs real samples of at least 2 patients for two halves (has {len(np.unique(codes))})")
    halves = _deal(codes, 2, [seed, 1])
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
    train = _f64(train)
    codes = _case_codes(cases, len(train))
    k = max(1, min(max_subsets, len(train) // max(size, 1)))
    while True:
        dealt = _deal(codes, k, [seed, 3])
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


class FeatureBank(Metric):
    """Collects real and synthetic features for the set metrics (KID, PRDC): ``update(x, real)``."""

    full_state_update = False

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.add_state("real", [], dist_reduce_fx="cat")
        self.add_state("fake", [], dist_reduce_fx="cat")

    def update(self, features: torch.Tensor, real: bool) -> None:  # type: ignore[override]
        (self.real if real else self.fake).append(torch.as_tensor(features).to(torch.float64).reshape(len(features), -1))

    def compute(self) -> dict[str, float]:
        real = torch.cat(self.real) if isinstance(self.real, list) else self.real
        fake = torch.cat(self.fake) if isinstance(self.fake, list) else self.fake
        return fidelity_metrics(real, fake)


# ----------------------------------------------------------------------------- KID


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(x·y / F + 1)³`` for all pairs: ``[N, F] × [M, F] → [N, M]``."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x: Any, y: Any) -> float:
    """Unbiased MMD² between ``x`` ``[m, F]`` and ``y`` ``[n, F]`` with :func:`polynomial_kernel`."""
    x, y = _f64(x), _f64(y)
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
    real, synthetic = _f64(real), _f64(synthetic)
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


# ----------------------------------------------------------------------------- IS


def inception_score(logits: Any, *, splits: int = 10, seed: int = 0) -> tuple[float, float]:
    """Inception score from classifier logits ``[N, K]``: ``(mean, std)`` over ``splits`` splits.

    The splits are consecutive parts of a seeded shuffle of the samples taken in a canonical
    order (rows sorted by their logits): a seeded random partition that does not depend on
    the order of the rows (real samples come patient by patient; in-order splits would each
    hold a few patients).

    Raises:
        ValueError: fewer samples than splits.
    """
    logits = _f64(logits)
    if len(logits) < splits:
        raise ValueError(f"IS needs at least {splits} samples (one per split), got {len(logits)}")
    canonical = np.lexsort(logits.numpy().T[::-1])  # by the first column, then the second, …
    logits = logits[torch.from_numpy(canonical[np.random.default_rng(seed).permutation(len(logits))])]
    scores = []
    for part in torch.tensor_split(logits, splits):
        logp = torch.log_softmax(part, dim=1)
        p = logp.exp()
        logpy = torch.logsumexp(logp, dim=0) - math.log(len(part))
        kl = (p * (logp - logpy)).sum(1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))


# ----------------------------------------------------------------------------- PRDC


def _kth_radius(x: torch.Tensor, k: int, codes: np.ndarray, block: int = 2048) -> torch.Tensor:
    """Distance of each row of ``x`` to its k-th nearest row of another patient (``codes``)."""
    groups = torch.from_numpy(codes)
    out = []
    for s in range(0, len(x), block):
        d = torch.cdist(x[s : s + block], x)
        d = d.masked_fill(groups[s : s + block, None] == groups[None, :], math.inf)  # itself and its patient
        out.append(d.kthvalue(k, dim=1).values)
    return torch.cat(out)


def _check_balls(what: str, codes: np.ndarray, k: int) -> None:
    n, most = len(codes), int(np.bincount(codes).max()) if len(codes) else 0
    if n - most < k:
        raise ValueError(f"k={k} balls need at least {k} {what} samples of other patients for every {what} sample "
                         f"(has {n}, up to {most} of one patient)")


def _inside_counts(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, block: int = 2048
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(per point: #balls containing it, per centre: whether any point is inside)``."""
    counts = torch.zeros(len(points), dtype=torch.int64)
    hit = torch.zeros(len(centres), dtype=torch.bool)
    for s in range(0, len(points), block):
        inside = torch.cdist(points[s : s + block], centres) <= radii[None, :]
        counts[s : s + block] = inside.sum(1)
        hit |= inside.any(0)
    return counts, hit


def precision_recall(real: Any, synthetic: Any, *, k: int = 3, real_cases: Any | None = None,
                     synthetic_cases: Any | None = None) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al.), k-NN balls with ``k`` (default 3)
    whose radii skip each sample's own patient (``real_cases`` / ``synthetic_cases``: one id
    per sample; ``None``: every sample its own patient).

    Raises:
        ValueError: a set has ``k`` or fewer samples of other patients for some sample.
    """
    real, synthetic = _f64(real), _f64(synthetic)
    if min(len(real), len(synthetic)) <= k:
        raise ValueError(f"precision/recall with k={k} need more than {k} samples in each set")
    real_codes, syn_codes = _case_codes(real_cases, len(real)), _case_codes(synthetic_cases, len(synthetic))
    _check_balls("real", real_codes, k)
    _check_balls("synthetic", syn_codes, k)
    r_real, r_syn = _kth_radius(real, k, real_codes), _kth_radius(synthetic, k, syn_codes)
    syn_in_real, _ = _inside_counts(synthetic, real, r_real)
    real_in_syn, _ = _inside_counts(real, synthetic, r_syn)
    return float((syn_in_real > 0).double().mean()), float((real_in_syn > 0).double().mean())


def density_coverage(real: Any, synthetic: Any, *, k: int = 5, real_cases: Any | None = None) -> tuple[float, float]:
    """Density and coverage (Naeem et al.), real k-NN balls with ``k`` (default 5) whose radii
    skip each sample's own patient (``real_cases``; ``None``: every sample its own patient).

    Raises:
        ValueError: fewer than ``k + 1`` real samples (``k`` of other patients for each) or no
            synthetic sample.
    """
    real, synthetic = _f64(real), _f64(synthetic)
    if len(real) <= k or len(synthetic) < 1:
        raise ValueError(f"density/coverage with k={k} need more than {k} real samples and some synthetic ones")
    codes = _case_codes(real_cases, len(real))
    _check_balls("real", codes, k)
    radii = _kth_radius(real, k, codes)
    counts, hit = _inside_counts(synthetic, real, radii)
    return float(counts.sum()) / (k * len(synthetic)), float(hit.double().mean())


# ----------------------------------------------------------------------------- all at once


def fidelity_metrics(
    real: Any,
    synthetic: Any,
    *,
    real_cases: Any | None = None,
    synthetic_cases: Any | None = None,
    train: Any | None = None,
    train_cases: Any | None = None,
    real_logits: Any | None = None,
    synthetic_logits: Any | None = None,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Every metric that the sample counts allow; the rest are ``None`` with a warning naming
    how many samples they need (``skipped`` lists them).

    Args:
        real: the reference real features ``[N, F]`` (:func:`evaluate_fidelity`: the test
            patients); ``real_cases`` their patient ids (``None``: one patient per sample).
        synthetic: ``[M, F]``; ``synthetic_cases`` likewise (a generator's samples are each
            their own).
        train: optionally the generator's training features, for ``fd_train``
            (:func:`train_frechet_distance` at the reference size ``N``); ``train_cases``
            their patient ids.
        real_logits, synthetic_logits: classifier logits for IS.

    Returns:
        ``{"n_real", "n_synthetic", "feature_dim", "fd", "fd_train", "fd_train_subsets",
        "fd_real_real", "relative_fd", "relative_fd_n", "kid_mean", "kid_std",
        "kid_subset_size", "precision", "recall", "density", "coverage", "is_mean",
        "is_std", "is_real_mean", "skipped": {metric: reason}}``.

    Raises:
        SynthmedError: nothing at all can be computed.
    """
    real, synthetic = _f64(real), _f64(synthetic)
    if real.shape[1] != synthetic.shape[1]:
        raise SynthmedError(f"feature dimensions differ: real {real.shape[1]}, synthetic {synthetic.shape[1]}")
    n, m = len(real), len(synthetic)
    out: dict[str, Any] = {"n_real": n, "n_synthetic": m, "feature_dim": int(real.shape[1])}
    skipped: dict[str, str] = {}

    def need(name: str, ok: bool, reason: str) -> bool:
        if not ok:
            skipped[name] = reason
            warnings.warn(f"{name} not computed: {reason}", stacklevel=3)
        return ok

    def attempt(name: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except ValueError as exc:
            need(name, False, str(exc))
            return None

    out.update(fd=None, fd_train=None, fd_train_subsets=None, fd_real_real=None, relative_fd=None, relative_fd_n=None)
    if need("fd", min(n, m) >= 2, f"needs at least 2 samples per set (has {n} real, {m} synthetic)"):
        out["fd"] = frechet_distance(real, synthetic)
        rel = attempt("relative_fd", lambda: relative_frechet_distance(real, synthetic, cases=real_cases, seed=seed))
        if rel is not None:
            out.update(fd_real_real=rel["fd_real_real"], relative_fd=rel["relative_fd"],
                       relative_fd_n=rel["relative_fd_n"])
        if train is not None and need("fd_train", len(train) >= 2, f"needs at least 2 training samples (has {len(train)})"):
            out["fd_train"], out["fd_train_subsets"] = train_frechet_distance(train, synthetic, n, cases=train_cases,
                                                                              seed=seed)
    out.update(kid_mean=None, kid_std=None, kid_subset_size=None)
    if need("kid", min(n, m) >= 2, f"needs at least 2 samples per set (has {n} real, {m} synthetic)"):
        mean, std, size = kernel_inception_distance(real, synthetic, subsets=kid_subsets, subset_size=kid_subset_size,
                                                    seed=seed)
        out.update(kid_mean=mean, kid_std=std, kid_subset_size=size)
    out.update(precision=None, recall=None)
    if need("precision_recall", min(n, m) > 3, f"needs at least 4 samples per set (k=3; has {n} real, {m} synthetic)"):
        pr = attempt("precision_recall", lambda: precision_recall(real, synthetic, k=3, real_cases=real_cases,
                                                                   synthetic_cases=synthetic_cases))
        if pr is not None:
            out["precision"], out["recall"] = pr
    out.update(density=None, coverage=None)
    if need("density_coverage", n > 5 and m >= 1, f"needs at least 6 real samples (k=5; has {n})"):
        dc = attempt("density_coverage", lambda: density_coverage(real, synthetic, k=5, real_cases=real_cases))
        if dc is not None:
            out["density"], out["coverage"] = dc
    out.update(is_mean=None, is_std=None, is_real_mean=None)
    if synthetic_logits is not None:
        sl = _f64(synthetic_logits)
        splits = min(10, len(sl))
        if need("is", len(sl) >= 2, f"needs at least 2 synthetic samples (has {len(sl)})"):
            if splits < 10:
                warnings.warn(f"IS: {len(sl)} samples, {splits} splits instead of 10 (10 need 10 samples)", stacklevel=2)
            out["is_mean"], out["is_std"] = inception_score(sl, splits=splits, seed=seed)
            if real_logits is not None and len(_f64(real_logits)) >= splits:
                out["is_real_mean"] = inception_score(real_logits, splits=splits, seed=seed)[0]
    if all(out[key] is None for key in ("fd", "kid_mean", "precision", "density", "is_mean")):
        raise SynthmedError(f"no fidelity metric can be computed from {n} real and {m} synthetic samples: "
                            "FD and KID need at least 2 of each")
    out["skipped"] = skipped
    return out


# ----------------------------------------------------------------------------- diversity


def ms_ssim_diversity(images: Any, *, pairs: int = 100, seed: int = 0, spatial_dims: int = 2) -> dict[str, Any]:
    """Mean MS-SSIM (MONAI) over random pairs of distinct samples of ``images`` ``[N, C, *spatial]``
    in [0, 1]: lower = more diverse (a collapsed generator scores near 1).

    The number of scales is the largest (<= 5, MONAI's default weights renormalised) that the
    image size allows with a 7-pixel kernel.

    Returns:
        ``{"ms_ssim": mean or None, "pairs": used, "scales": s}``.
    """
    from monai.metrics import MultiScaleSSIMMetric

    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images, dtype=torch.float32)
    if len(x) < 2:
        warnings.warn(f"MS-SSIM diversity needs at least 2 samples, got {len(x)}", stacklevel=2)
        return {"ms_ssim": None, "pairs": 0, "scales": 0}
    kernel = 7
    side = min(x.shape[2:])
    scales = 1
    while scales < 5 and side // 2 ** scales > (kernel - 1):
        scales += 1
    while scales > 1 and side // 2 ** (scales - 1) <= (kernel - 1):
        scales -= 1
    if side <= kernel - 1:
        warnings.warn(f"MS-SSIM needs images larger than {kernel - 1} pixels, got {side}", stacklevel=2)
        return {"ms_ssim": None, "pairs": 0, "scales": 0}
    weights = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)[:scales]
    weights = tuple(w / sum(weights) for w in weights)
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(x), size=pairs)
    j = (i + rng.integers(1, len(x), size=pairs)) % len(x)
    metric = MultiScaleSSIMMetric(spatial_dims=spatial_dims, data_range=1.0, kernel_size=kernel, weights=weights)
    vals = metric(x[torch.from_numpy(i)], x[torch.from_numpy(j)])
    return {"ms_ssim": float(vals.mean()), "pairs": int(pairs), "scales": scales}


# ----------------------------------------------------------------------------- stores


def check_comparable(a: Any, b: Any) -> None:
    """Raise a :class:`SynthmedError` naming both stores unless channels and sample shapes match."""
    if tuple(a.channels) != tuple(b.channels) or tuple(a.sample_shape) != tuple(b.sample_shape):
        raise SynthmedError(
            f"cannot compare {a.path} (channels {list(a.channels)}, sample shape {list(a.sample_shape)}) with "
            f"{b.path} (channels {list(b.channels)}, sample shape {list(b.sample_shape)}): channels and sizes must match")


def evaluate_fidelity(
    real: Any,
    synthetic: Any,
    *,
    features: str = "domain",
    weights: Any = None,
    real_split: str | None = "test",
    train_split: str | None = "train",
    encoder_config: Any = None,
    channel_reduce: str = "mean",
    batch_size: int = 32,
    device: str = "auto",
    diversity_pairs: int = 100,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """All fidelity metrics of the store ``synthetic`` against the store ``real``.

    The reference is the ``real_split`` of ``real`` (default ``test``: the held-out patients;
    ``None``: every sample); every metric is computed against it, except ``fd_train``: FD
    against the ``train_split`` (the generator's training patients) at the reference's sample
    size (see the module docstring; left out when ``train_split`` is ``None`` or the
    reference itself). Patients are the stores' ``case_id`` columns.

    Features come from :func:`synthmed.features.make_extractor` (``domain``: the
    encoder of ``real`` is loaded from beside it or trained first, on its ``train`` split).
    Adds MS-SSIM diversity of the synthetic samples (3D: their central axial slices).

    Returns:
        :func:`fidelity_metrics`'s dict plus ``"features"``, ``"real"``, ``"synthetic"``,
        ``"real_split"``, ``"train_split"`` and ``"ms_ssim"`` (with ``"ms_ssim_pairs"``).

    Raises:
        SynthmedError: mismatched channels or sizes, missing weights or splits, nothing computable.
    """
    from synthmed.data.store import Store
    from synthmed.features import DomainEncoderConfig, extract_features, make_extractor
    from synthmed.training.fabric import resolve_device

    real = real if isinstance(real, Store) else Store.open(real)
    synthetic = synthetic if isinstance(synthetic, Store) else Store.open(synthetic)
    check_comparable(real, synthetic)
    if real_split is None or train_split == real_split:  # the reference already holds the training patients
        train_split = None
    idx = real.indices(real_split) if real_split else real.indices()
    train_idx = real.indices(train_split) if train_split else None
    dev = resolve_device(device)
    extractor = make_extractor(features, real=real, weights=weights, channel_reduce=channel_reduce, device=dev,
                               encoder_config=encoder_config or DomainEncoderConfig(), progress=progress)
    if isinstance(extractor, torch.nn.Module):
        extractor = extractor.to(dev)
    cases = real.samples["case_id"].to_numpy()
    real_f, real_logits = extract_features(real, extractor, indices=idx, batch_size=batch_size, device=dev)
    train_f = None
    if train_idx is not None:
        train_f, _ = extract_features(real, extractor, indices=train_idx, batch_size=batch_size, device=dev)
    syn_f, syn_logits = extract_features(synthetic, extractor, batch_size=batch_size, device=dev)
    out = fidelity_metrics(real_f, syn_f, real_cases=cases[idx], synthetic_cases=synthetic.samples["case_id"].to_numpy(),
                           train=train_f, train_cases=None if train_idx is None else cases[train_idx],
                           real_logits=real_logits, synthetic_logits=syn_logits,
                           kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, seed=seed)
    if syn_logits is None:
        out["skipped"]["is"] = f"the {features} features have no classifier head"
    pick = np.sort(np.random.default_rng(seed).permutation(len(synthetic))[:256])
    images, _ = synthetic.read(pick)
    if synthetic.dims == 3:
        images = images[:, :, images.shape[2] // 2]
    div = ms_ssim_diversity(images, pairs=diversity_pairs, seed=seed)
    out.update(ms_ssim=div["ms_ssim"], ms_ssim_pairs=div["pairs"], ms_ssim_scales=div["scales"])
    return {"features": features, "real": str(real.path), "real_split": real_split, "train_split": train_split,
            "synthetic": str(synthetic.path), **out}
