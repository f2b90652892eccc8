"""Slice consistency of volumes: how alike adjacent axial slices are, and how much the image changes between them.

A generator of whole volumes should make neighbouring slices agree as a scanner's do: a
volume assembled from independent slices has adjacent-slice correlations near 0 and large
jumps between slices. Each set of volumes is summarised by the correlation of adjacent slices
and the distribution of the inter-slice difference, and a synthetic set is compared with a
real one (:func:`compare_slice_consistency`).

Conventions
-----------

* **Inputs.** Volumes ``[N, C, D, H, W]`` (numpy or torch, any float dtype; values in
  ``[0, 1]`` as stored), computed in float64. The slice axis is ``D``, the store's axial axis
  (inferior → superior): slice ``k`` of channel ``c`` of volume ``n`` is ``x[n, c, k]``
  ``[H, W]``, and each volume and channel has the ``D - 1`` adjacent pairs ``(k, k + 1)``.
* **Correlation.** Of each pair, the Pearson correlation of its two slices' ``H · W`` voxels
  (``np.corrcoef`` of the flattened slices). A *flat* slice — population standard deviation at
  most ``flat_std`` (:data:`FLAT_STD`, on the ``[0, 1]`` scale), e.g. the zero padding above and
  below a brain cropped into a cube — has no Pearson correlation (``np.corrcoef`` gives NaN):
  a pair with a flat slice is left out of the correlation (its entry is NaN) and counted in
  ``flat_pairs``. A channel's correlation is the mean over its remaining pairs of all volumes
  (pooled); ``None`` when none remains. ``correlation`` is the mean of the per-channel values
  that exist (``None`` when none does).
* **Difference.** Of each pair, the mean over its ``H · W`` voxels of ``|x[k+1] − x[k]|``; every
  pair counts, flat or not (two blank slices differ by 0). A channel's difference is the mean
  over its pairs — the voxel-wise mean of ``|x_{k+1} − x_k|``, every pair having ``H · W``
  voxels — and ``difference`` the mean over channels. The *difference distribution* is that of
  the pairs' differences pooled over channels (``N · C · (D − 1)`` values): one number per
  slice-to-slice step, not per voxel, whose voxel distribution the zero background of brain
  volumes would dominate. Its percentiles (:data:`PERCENTILES`) are ``numpy.percentile``'s
  ``linear`` method (Hyndman and Fan's type 7), keys ``difference_p5`` … ``difference_p95``.
* **Comparison** (:func:`compare_slice_consistency`, synthetic against real): ratios
  synthetic / real of the correlation and of the difference (``None`` when the real value is
  ``None`` or 0), and two-sample distances between the difference distributions:
  ``scipy.stats.wasserstein_distance`` (the 1-Wasserstein distance, in intensity units) and
  the Kolmogorov–Smirnov statistic of ``scipy.stats.ks_2samp`` (in ``[0, 1]``).
* **The headline statistic** (:data:`HEADLINE`) is the mean adjacent-slice correlation,
  ``correlation``: "slice-consistent as real volumes" reads ``|correlation_ratio − 1| <=``
  a tolerance (:func:`headline_gap`; the latent-diffusion benchmark asks for 10 %).

:class:`SliceConsistency` accumulates volumes batch by batch (memory: one volume in float64
plus ``O(N · C · D)`` pair values); :func:`slice_consistency` is one set at once.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

#: A slice whose population standard deviation is at most this (on the [0, 1] scale) is flat.
FLAT_STD = 1e-6
#: Percentiles of the difference distribution that are reported.
PERCENTILES: tuple[int, ...] = (5, 25, 50, 75, 95)
#: The headline slice-consistency statistic: the mean adjacent-slice correlation.
HEADLINE = "correlation"
#: The keys of a set's summary that :func:`compare_slice_consistency` gives for both sets.
SET_KEYS: tuple[str, ...] = ("correlation", "correlation_per_channel", "difference", "difference_per_channel",
                             *(f"difference_p{p}" for p in PERCENTILES), "volumes", "pairs", "flat_pairs")


def pair_statistics(volume: Any, *, flat_std: float = FLAT_STD, device: str | torch.device = "cpu"
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The adjacent-slice pairs of one volume ``[C, D, H, W]``: ``(correlation, difference)``,
    float64 ``[C, D - 1]`` each (computed on ``device``); a pair with a flat slice has correlation
    NaN (see the module)."""
    v = torch.as_tensor(np.asarray(volume) if not isinstance(volume, torch.Tensor) else volume)
    v = v.detach().to(device, torch.float64)
    c, d = v.shape[:2]
    v = v.reshape(c, d, -1)
    z = v - v.mean(dim=-1, keepdim=True)
    ss = z.square().sum(dim=-1)  # [C, D]
    flat = ss.div(v.shape[-1]).sqrt() <= flat_std
    cov = (z[:, :-1] * z[:, 1:]).sum(dim=-1)
    denom = (ss[:, :-1] * ss[:, 1:]).sqrt()
    skip = flat[:, :-1] | flat[:, 1:]
    r = torch.where(skip, torch.full_like(cov, math.nan), cov / torch.where(skip, torch.ones_like(denom), denom))
    diff = (v[:, 1:] - v[:, :-1]).abs().mean(dim=-1)
    return r.clamp(-1.0, 1.0).cpu().numpy(), diff.cpu().numpy()


class SliceConsistency:
    """Adjacent-slice correlation and inter-slice difference of volumes, accumulated batch by batch.

    ``update(volumes [b, C, D, H, W])`` any number of times, then :meth:`compute`; the pairs'
    values are kept (:attr:`correlations`, :attr:`differences`, ``[N, C, D - 1]``) for
    :func:`compare_slice_consistency`. Conventions: the module docstring. ``device``: where each
    volume's pairs are computed (float64).
    """

    def __init__(self, *, flat_std: float = FLAT_STD, device: str | torch.device = "cpu") -> None:
        self.flat_std = float(flat_std)
        self.device = device
        self._r: list[np.ndarray] = []
        self._d: list[np.ndarray] = []
        self._shape: tuple[int, int] | None = None  # (C, D)

    def update(self, volumes: Any) -> SliceConsistency:
        """Add a batch of volumes ``[b, C, D, H, W]``; returns ``self``.

        Raises:
            ValueError: not five dimensions, fewer than 2 slices, or channels or depth unlike earlier batches.
        """
        shape = tuple(volumes.shape)
        if len(shape) != 5:
            raise ValueError(f"slice consistency needs volumes [N, C, D, H, W], got shape {shape}")
        if shape[2] < 2:
            raise ValueError(f"slice consistency needs at least 2 slices along D, got shape {shape}")
        if self._shape is not None and shape[1:3] != self._shape:
            raise ValueError(f"volumes of {shape[1]} channels and {shape[2]} slices after {self._shape[0]} and "
                             f"{self._shape[1]}: every batch must match")
        self._shape = (shape[1], shape[2])
        for volume in volumes:
            r, d = pair_statistics(volume, flat_std=self.flat_std, device=self.device)
            self._r.append(r)
            self._d.append(d)
        return self

    def __len__(self) -> int:
        return len(self._r)

    @property
    def correlations(self) -> np.ndarray:
        """Pearson correlation of each pair, float64 ``[N, C, D - 1]``; NaN where a slice is flat."""
        return np.stack(self._r) if self._r else np.zeros((0, 0, 0))

    @property
    def differences(self) -> np.ndarray:
        """Mean absolute difference of each pair, float64 ``[N, C, D - 1]``."""
        return np.stack(self._d) if self._d else np.zeros((0, 0, 0))

    def compute(self) -> dict[str, Any]:
        """The set's summary: ``correlation`` (mean over channels of ``correlation_per_channel``),
        ``difference`` (likewise), ``difference_p5`` … ``difference_p95``, ``volumes``, ``pairs``
        (``N · C · (D − 1)``) and ``flat_pairs`` (those left out of the correlation).

        Raises:
            ValueError: no volumes were added.
        """
        if not self._r:
            raise ValueError("slice consistency of no volumes")
        r, d = self.correlations, self.differences
        per_channel = [_mean(r[:, c]) for c in range(r.shape[1])]
        valid = [v for v in per_channel if v is not None]
        diff_channel = [float(d[:, c].mean()) for c in range(d.shape[1])]
        pooled = d.ravel()
        return {"correlation": float(np.mean(valid)) if valid else None, "correlation_per_channel": per_channel,
                "difference": float(np.mean(diff_channel)), "difference_per_channel": diff_channel,
                **{f"difference_p{p}": float(np.percentile(pooled, p, method="linear")) for p in PERCENTILES},
                "volumes": len(r), "pairs": int(r.size), "flat_pairs": int(np.isnan(r).sum())}


def _mean(values: np.ndarray) -> float | None:
    """Mean of the non-NaN ``values``; ``None`` when there are none."""
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else None


def _accumulated(x: SliceConsistency | Any, flat_std: float) -> SliceConsistency:
    return x if isinstance(x, SliceConsistency) else SliceConsistency(flat_std=flat_std).update(x)


def slice_consistency(volumes: Any, *, flat_std: float = FLAT_STD) -> dict[str, Any]:
    """:meth:`SliceConsistency.compute` of ``volumes`` ``[N, C, D, H, W]`` at once."""
    return SliceConsistency(flat_std=flat_std).update(volumes).compute()


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else float(a / b)


def compare_slice_consistency(synthetic: SliceConsistency | Any, real: SliceConsistency | Any, *,
                              flat_std: float = FLAT_STD) -> dict[str, Any]:
    """Slice consistency of ``synthetic`` volumes against ``real`` ones (accumulators or arrays
    ``[N, C, D, H, W]`` with the same channels and depth), as one flat dict.

    Returns:
        every :data:`SET_KEYS` entry of the synthetic set under its own name and of the real set
        with ``_real`` appended (``correlation``, ``correlation_real``, …), and
        ``correlation_ratio``, ``difference_ratio`` (synthetic / real; ``None`` when the real value
        is ``None`` or 0), ``difference_wasserstein`` and ``difference_ks`` (two-sample distances
        between the difference distributions; see the module).

    Raises:
        ValueError: a set without volumes, or channels or depth that differ between the sets.
    """
    from scipy import stats

    syn, ref = _accumulated(synthetic, flat_std), _accumulated(real, flat_std)
    a, b = syn.compute(), ref.compute()  # raises for a set without volumes
    da, db = syn.differences, ref.differences
    if da.shape[1:] != db.shape[1:]:
        raise ValueError(f"cannot compare volumes of {da.shape[1]} channels and {da.shape[2] + 1} slices with "
                         f"{db.shape[1]} channels and {db.shape[2] + 1} slices")
    da, db = da.ravel(), db.ravel()
    out: dict[str, Any] = {}
    for key in SET_KEYS:
        out[key], out[f"{key}_real"] = a[key], b[key]
    out.update(correlation_ratio=_ratio(a["correlation"], b["correlation"]),
               difference_ratio=_ratio(a["difference"], b["difference"]),
               difference_wasserstein=float(stats.wasserstein_distance(da, db)),
               difference_ks=float(stats.ks_2samp(da, db).statistic))
    return out


def headline_gap(comparison: dict[str, Any]) -> float | None:
    """``|correlation_ratio − 1|`` of a :func:`compare_slice_consistency` result: how far the
    synthetic volumes' headline statistic (:data:`HEADLINE`) is from the real volumes', as a share
    of the real value (``None`` without a ratio)."""
    ratio = comparison.get(f"{HEADLINE}_ratio")
    return None if ratio is None else abs(float(ratio) - 1.0)
