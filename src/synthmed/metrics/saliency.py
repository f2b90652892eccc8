"""Scores of a saliency map against a tumour mask: positive mass inside it, pointing game, voxel-wise AUROC.

Conventions (one sample; a map and a mask of the same shape, 2D or 3D, any non-zero mask
value is foreground, so canonical labels score the whole tumour):

* **Mass in mask** = Σ max(s, 0)·m / Σ max(s, 0): the share of the *positive* saliency inside
  the mask; negative values count as no saliency. A map with no positive value (all ≤ 0) has
  no mass to share out: ``nan``. An empty mask gives 0.
* **Pointing game**: 1 when the map's maximum lies inside the mask, else 0. When several
  voxels share the maximum, the score is the share of them inside the mask (a constant map
  scores the mask's area fraction, the chance level). An empty mask gives 0.
* **AUROC**: the saliency values as a voxel-wise detector of the mask, i.e. the probability
  that a random mask voxel outscores a random background voxel, ties counting one half
  (midranks, the Mann–Whitney U convention; equal to ``sklearn.metrics.roc_auc_score``).
  ``nan`` when the mask is empty or covers everything (one class only).
* **Dilation** (:func:`dilate`): a voxel joins the mask when it lies within ``radius`` voxels
  (Euclidean, ≤) of a mask voxel; outside the array counts as background.
* **Batches** (:func:`saliency_scores`): scores are defined on *tumour-bearing* samples only;
  a sample whose (dilated) mask is empty gets ``nan`` in all three. :func:`summarise_saliency`
  averages each score over the samples where it is finite and counts the tumour-bearing ones.

Inputs must be finite; saliency is computed in float64.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import ndimage, stats

__all__ = [
    "SALIENCY_SCORES",
    "dilate",
    "mass_in_mask",
    "pointing_game",
    "saliency_auroc",
    "saliency_scores",
    "summarise_saliency",
]

#: the keys of :func:`saliency_scores`, in order.
SALIENCY_SCORES = ("mass_in_mask", "pointing_game", "auroc")


def _pair(saliency: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The map as finite float64 and the mask as bool, checked to share one shape."""
    s = np.asarray(saliency, dtype=np.float64)
    m = np.asarray(mask)
    m = m if m.dtype == np.bool_ else m != 0
    if s.shape != m.shape:
        raise ValueError(f"saliency of shape {s.shape} and mask of shape {m.shape} differ")
    if s.size == 0:
        raise ValueError("saliency map is empty (no voxels)")
    if not np.all(np.isfinite(s)):
        raise ValueError("saliency map holds NaN or infinite values")
    return s, m


def mass_in_mask(saliency: np.ndarray, mask: np.ndarray) -> float:
    """Share of the positive saliency mass inside ``mask``, in [0, 1]; ``nan`` when no value is positive."""
    s, m = _pair(saliency, mask)
    positive = np.maximum(s, 0.0)
    total = positive.sum()
    if total <= 0:
        return float("nan")
    return float(positive[m].sum() / total)


def pointing_game(saliency: np.ndarray, mask: np.ndarray) -> float:
    """1 when the maximum of ``saliency`` is inside ``mask``, else 0; ties: the share of maximal voxels inside."""
    s, m = _pair(saliency, mask)
    top = s == s.max()
    return float(np.count_nonzero(top & m) / np.count_nonzero(top))


def saliency_auroc(saliency: np.ndarray, mask: np.ndarray) -> float:
    """AUROC of the saliency values as a detector of ``mask`` voxels (ties: midranks); ``nan`` if the mask is empty or full."""
    s, m = _pair(saliency, mask)
    n_pos = int(np.count_nonzero(m))
    n_neg = m.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = stats.rankdata(s.ravel(), method="average")
    u = ranks[m.ravel()].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _ball(radius: int, ndim: int) -> np.ndarray:
    """Boolean Euclidean ball of ``radius`` voxels (offsets with Σ d² ≤ radius²)."""
    axis = np.arange(-radius, radius + 1)
    grid = np.meshgrid(*([axis] * ndim), indexing="ij")
    return sum(g * g for g in grid) <= radius * radius


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` (non-zero is foreground) dilated by a Euclidean ball of ``radius`` voxels, as bool; 0 leaves it unchanged."""
    m = np.asarray(mask)
    m = m if m.dtype == np.bool_ else m != 0
    if int(radius) != radius or radius < 0:
        raise ValueError(f"dilation radius must be a non-negative integer, got {radius!r}")
    radius = int(radius)
    if radius == 0 or m.ndim == 0:
        return m.copy()
    return ndimage.binary_dilation(m, structure=_ball(radius, m.ndim))


def saliency_scores(maps: np.ndarray, masks: np.ndarray, *, dilation: int = 0) -> dict[str, np.ndarray]:
    """Per-sample scores of ``maps`` ``[N, *spatial]`` against ``masks`` ``[N, *spatial]``.

    Each mask is first dilated by ``dilation`` voxels (:func:`dilate`). Returns float64 arrays
    ``[N]`` under :data:`SALIENCY_SCORES` (``mass_in_mask``, ``pointing_game``, ``auroc``);
    a sample with an empty mask is not scored (``nan`` in all three).
    """
    maps = np.asarray(maps)
    masks = np.asarray(masks)
    if maps.shape != masks.shape:
        raise ValueError(f"maps of shape {maps.shape} and masks of shape {masks.shape} differ")
    if maps.ndim < 2:
        raise ValueError(f"maps must be [N, *spatial], got shape {maps.shape}")
    out = {key: np.full(len(maps), np.nan) for key in SALIENCY_SCORES}
    for i, (s, m) in enumerate(zip(maps, masks)):
        m = dilate(m, dilation)
        if not m.any():
            continue
        out["mass_in_mask"][i] = mass_in_mask(s, m)
        out["pointing_game"][i] = pointing_game(s, m)
        out["auroc"][i] = saliency_auroc(s, m)
    return out


def summarise_saliency(scores: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Mean of each score over the samples where it is finite (``nan`` if none), and ``n_scored``.

    ``n_scored`` is the number of tumour-bearing samples (those with a pointing-game score,
    which is defined for every non-empty mask).
    """
    out: dict[str, float] = {}
    for key, values in scores.items():
        values = np.asarray(values, dtype=np.float64)
        finite = values[np.isfinite(values)]
        out[key] = float(finite.mean()) if finite.size else float("nan")
    if "pointing_game" in scores:
        out["n_scored"] = int(np.count_nonzero(np.isfinite(np.asarray(scores["pointing_game"], dtype=np.float64))))
    return out
