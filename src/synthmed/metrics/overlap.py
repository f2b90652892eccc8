"""Overlap metrics of segmentations: Dice and two 95th-percentile Hausdorff distances (HD95).

Conventions (the medpy / MONAI ones, so numbers compare with published results):

* Inputs are boolean masks (anything non-zero is foreground) of the same shape, 2D or 3D,
  indexed like the data (``[D, H, W]`` or ``[H, W]``); ``spacing`` is the voxel size in mm in
  the same axis order.
* **Dice** = 2·|P ∩ R| / (|P| + |R|), equal to medpy's ``dc`` when either mask is non-empty.
* **Surface distances**: a surface voxel is a foreground voxel removed by one binary erosion
  with the face-connected (connectivity 1) structuring element, the outside of the array
  counting as background. The directed distances P→R are the Euclidean distances in mm
  (``spacing``) from every surface voxel of P to the nearest surface voxel of R; R→P likewise.
  Percentiles are ``numpy.percentile``'s (linear interpolation between order statistics, as
  ``torch.quantile``).
* **HD95** (:func:`hd95`, key ``hd95``) = the 95th percentile of the *pooled* directed
  distances (P→R together with R→P): medpy's ``hd95`` (``voxelspacing=spacing``,
  ``connectivity=1``).
* **HD95-max** (:func:`hd95_max`, key ``hd95_max``) = the larger of the two *directed* 95th
  percentiles, max(P95(P→R), P95(R→P)): MONAI's ``compute_hausdorff_distance(percentile=95)``
  (same surfaces, distances and interpolation; MONAI works in float32). The BraTS 2023+
  lesion-wise evaluation also takes the max of the directed 95th percentiles, but from the
  DeepMind ``surface-distance`` package, whose percentiles weight surface elements by area and
  are not interpolated, so its numbers are close to, not equal to, these. Since a percentile
  of a pooled set lies between the sets' percentiles, ``hd95 <= hd95_max``; they differ most
  when one direction has outliers (a far false-positive blob is diluted in the pooled set).
* **Empty masks** (both HD95s alike): both empty → Dice 1, HD95 0 (a correct "no tumour");
  exactly one empty → Dice 0, HD95 = the diagonal of the image extent in mm,
  ``sqrt(Σ (shape_i · spacing_i)²)`` (373.13 for 240×240×155 at 1 mm), the largest distance
  possible inside the image. (There MONAI gives nan and medpy raises.)

Speed: both masks are cropped to the bounding box of their union plus one voxel of
background (which leaves every surface and every distance unchanged), and one Euclidean
distance transform is run per direction on the crop.

Regions: :func:`region_masks` turns canonical labels (0 background, 1 NCR, 2 ED, 3 ET) into
the BraTS regions WT = {1, 2, 3}, TC = {1, 3}, ET = {3}; :func:`overlap_by_region` and
:class:`OverlapAccumulator` score a predicted label volume region by region.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

from synthmed.data.case import REGIONS

__all__ = [
    "OVERLAP_METRICS",
    "OverlapAccumulator",
    "dice",
    "hausdorff95",
    "hd95",
    "hd95_max",
    "image_diagonal",
    "overlap_by_region",
    "region_masks",
    "surface_distances",
]


def _as_bool(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    return mask if mask.dtype == np.bool_ else mask != 0


def _spacing(spacing: float | Sequence[float] | None, ndim: int) -> np.ndarray:
    if spacing is None:
        return np.ones(ndim, np.float64)
    arr = np.broadcast_to(np.asarray(spacing, np.float64), (ndim,)) if np.ndim(spacing) == 0 else np.asarray(spacing, np.float64)
    if arr.shape != (ndim,):
        raise ValueError(f"spacing {tuple(arr.tolist())} does not have one value per axis of a {ndim}D mask")
    if np.any(arr <= 0):
        raise ValueError(f"spacing must be positive, got {tuple(arr.tolist())}")
    return arr


def _check_pair(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, ref = _as_bool(pred), _as_bool(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"pred and ref shapes differ: {pred.shape} vs {ref.shape}")
    return pred, ref


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice coefficient 2·|P ∩ R| / (|P| + |R|) of two masks of the same shape.

    Args:
        pred: predicted mask, any shape (non-zero = foreground).
        ref: reference mask, same shape.

    Returns:
        Dice in [0, 1]; 1.0 when both masks are empty (see the module docstring).
    """
    pred, ref = _check_pair(pred, ref)
    total = int(np.count_nonzero(pred)) + int(np.count_nonzero(ref))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(pred & ref)) / total


def image_diagonal(shape: Sequence[int], spacing: float | Sequence[float] | None = None) -> float:
    """Diagonal of an image extent in mm: ``sqrt(Σ (shape_i · spacing_i)²)``."""
    sp = _spacing(spacing, len(shape))
    return float(math.sqrt(sum((int(n) * float(s)) ** 2 for n, s in zip(shape, sp))))


def _crop_union(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cropped to their union's bounding box, padded with one background voxel."""
    union = pred | ref
    box = []
    for axis in range(union.ndim):
        other = tuple(a for a in range(union.ndim) if a != axis)
        hits = np.flatnonzero(union.any(axis=other))
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    box = tuple(box)
    return np.pad(pred[box], 1), np.pad(ref[box], 1)


def _border(mask: np.ndarray) -> np.ndarray:
    footprint = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask ^ ndimage.binary_erosion(mask, structure=footprint, iterations=1)


def surface_distances(pred: np.ndarray, ref: np.ndarray, spacing: float | Sequence[float] | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Surface distances in mm in both directions between two non-empty masks.

    Returns:
        ``(pred_to_ref, ref_to_pred)``: float64 arrays, the distance from each surface voxel
        of ``pred`` to the nearest surface voxel of ``ref`` and vice versa (surfaces as in the
        module docstring).

    Raises:
        ValueError: a mask is empty, the shapes differ or ``spacing`` does not fit.
    """
    pred, ref = _check_pair(pred, ref)
    sp = _spacing(spacing, pred.ndim)
    if not pred.any() or not ref.any():
        raise ValueError("surface distances need two non-empty masks")
    pred, ref = _crop_union(pred, ref)
    pred_border, ref_border = _border(pred), _border(ref)
    to_ref = ndimage.distance_transform_edt(~ref_border, sampling=sp)[pred_border]
    to_pred = ndimage.distance_transform_edt(~pred_border, sampling=sp)[ref_border]
    return to_ref, to_pred


def _hd95_both(pred: np.ndarray, ref: np.ndarray, spacing: float | Sequence[float] | None) -> tuple[float, float]:
    """``(pooled, directed-max)`` HD95 from one pair of distance transforms (conventions in the module)."""
    pred, ref = _check_pair(pred, ref)
    sp = _spacing(spacing, pred.ndim)
    has_pred, has_ref = bool(pred.any()), bool(ref.any())
    if not has_pred and not has_ref:
        return 0.0, 0.0
    if has_pred != has_ref:
        diagonal = image_diagonal(pred.shape, sp)
        return diagonal, diagonal
    to_ref, to_pred = surface_distances(pred, ref, sp)
    pooled = float(np.percentile(np.concatenate([to_ref, to_pred]), 95))
    return pooled, float(max(np.percentile(to_ref, 95), np.percentile(to_pred, 95)))


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: float | Sequence[float] | None = None) -> float:
    """HD95, pooled definition (medpy's ``hd95``): the 95th percentile of both directions' surface distances together, in mm.

    Args:
        pred: predicted mask, 2D or 3D (non-zero = foreground).
        ref: reference mask, same shape.
        spacing: voxel size in mm per axis (a number for isotropic voxels; default 1).

    Returns:
        HD95 in mm; 0.0 when both masks are empty, the image diagonal
        (:func:`image_diagonal`) when exactly one is (see the module docstring).
    """
    return _hd95_both(pred, ref, spacing)[0]


#: The pooled (medpy) HD95 under its earlier name.
hausdorff95 = hd95


def hd95_max(pred: np.ndarray, ref: np.ndarray, spacing: float | Sequence[float] | None = None) -> float:
    """HD95, directed-max definition (MONAI's): max of the two directed 95th percentiles, in mm.

    ``max(P95(pred→ref), P95(ref→pred))`` with the surfaces, distances and empty-mask values
    of :func:`hd95` (see the module docstring); always ``>= hd95(pred, ref, spacing)``.
    """
    return _hd95_both(pred, ref, spacing)[1]


def region_masks(label: np.ndarray, regions: Mapping[str, Sequence[int]] = REGIONS) -> dict[str, np.ndarray]:
    """Boolean masks of the BraTS regions (default WT = {1,2,3}, TC = {1,3}, ET = {3}) of a label array."""
    label = np.asarray(label)
    return {name: np.isin(label, list(values)) for name, values in regions.items()}


def overlap_by_region(pred_label: np.ndarray, ref_label: np.ndarray, spacing: float | Sequence[float] | None = None,
                      regions: Mapping[str, Sequence[int]] = REGIONS) -> dict[str, dict[str, float]]:
    """Dice and both HD95s of each region of two canonical label arrays.

    Returns:
        ``{"WT": {"dice": …, "hd95": …, "hd95_max": …}, "TC": {…}, "ET": {…}}`` (``hd95``: pooled,
        medpy; ``hd95_max``: directed max, MONAI).
    """
    pred_label, ref_label = np.asarray(pred_label), np.asarray(ref_label)
    if pred_label.shape != ref_label.shape:
        raise ValueError(f"pred and ref label shapes differ: {pred_label.shape} vs {ref_label.shape}")
    pred, ref = region_masks(pred_label, regions), region_masks(ref_label, regions)
    scores = {}
    for name in regions:
        pooled, directed_max = _hd95_both(pred[name], ref[name], spacing)
        scores[name] = {"dice": dice(pred[name], ref[name]), "hd95": pooled, "hd95_max": directed_max}
    return scores


#: The per-case metrics of :func:`overlap_by_region`, in report order.
OVERLAP_METRICS: tuple[str, ...] = ("dice", "hd95", "hd95_max")


class OverlapAccumulator:
    """Per-case Dice and both HD95s by region, accumulated case by case (torchmetrics-style).

    ``update(pred_label, ref_label, spacing, case_id)`` scores one case with
    :func:`overlap_by_region`; ``compute()`` returns the per-case rows and the mean and sample
    standard deviation (``ddof=1``; 0 for one case) of each region's metrics
    (:data:`OVERLAP_METRICS`) over cases.

    Args:
        regions: region name → canonical labels (default the BraTS regions).
    """

    def __init__(self, regions: Mapping[str, Sequence[int]] = REGIONS):
        self.regions = {k: tuple(v) for k, v in regions.items()}
        self.cases: list[dict] = []

    def reset(self) -> None:
        self.cases = []

    def update(self, pred_label: np.ndarray, ref_label: np.ndarray, spacing: float | Sequence[float] | None = None,
               case_id: str | None = None) -> dict[str, dict[str, float]]:
        """Score one case; returns its ``{region: {"dice", "hd95", "hd95_max"}}``."""
        scores = overlap_by_region(pred_label, ref_label, spacing, self.regions)
        self.cases.append({"case_id": str(case_id if case_id is not None else len(self.cases)), **scores})
        return scores

    def compute(self) -> dict:
        """``{"cases": [{"case_id", region: {"dice", "hd95", "hd95_max"}}…], "mean": {region: {…}}, "sd": {region: {…}}, "n": N}``.

        Raises:
            ValueError: no case was added.
        """
        if not self.cases:
            raise ValueError("no cases were scored")
        mean, sd = {}, {}
        for name in self.regions:
            mean[name], sd[name] = {}, {}
            for metric in OVERLAP_METRICS:
                values = np.array([c[name][metric] for c in self.cases], np.float64)
                mean[name][metric] = float(values.mean())
                sd[name][metric] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        return {"cases": [dict(c) for c in self.cases], "mean": mean, "sd": sd, "n": len(self.cases)}
