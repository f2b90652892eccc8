"""Per-case preprocessing from a `Case` to store samples.

Conventions (recorded in every store's ``store.json`` under ``normalisation``):

- **Brain mask**: voxels where any channel is non-zero. BraTS, MSD and the phantom are
  skull-stripped with an exact-zero background; data that is not should be skull-stripped
  first.
- **Intensity normalisation**, per volume and channel: the 0.5th and 99.5th percentiles of
  the brain voxels map to 0 and 1, values are clipped to [0, 1], the background is 0.
- **2D**: axial slices (``Case.images[:, d]``) whose brain covers more than
  ``min_brain_fraction`` (default 15 %) of the slice, like the reference study, resized to
  ``size × size``.
- **3D**: crop to the brain's bounding box, zero-pad to a cube (keeps the aspect ratio),
  resize to ``size³``.
- **Resizing**: images bilinear with antialiasing (2D) or trilinear / area (3D, up / down);
  labels through their one-hot maps with the same interpolation, then argmax, so small
  structures survive down-sampling better than with nearest neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from synthmed.data.case import LABEL_NAMES, Case

#: Default fraction of a slice that must be brain for the slice to be kept (2D).
MIN_BRAIN_FRACTION = 0.15
#: Axial slices normalised and resized together (bounds temporary memory, not results).
SLICE_BLOCK = 16
#: Percentiles of the brain intensities mapped to 0 and 1.
PERCENTILES = (0.5, 99.5)


def normalisation_record(percentiles: tuple[float, float] = PERCENTILES) -> dict:
    """The ``normalisation`` entry of ``store.json`` for :func:`normalise_intensities`."""
    return {
        "method": "percentile",
        "percentiles": list(percentiles),
        "within": "brain: voxels where any channel is non-zero",
        "range": [0.0, 1.0],
        "background": 0.0,
        "per": "volume and channel",
    }


def brain_mask(images: np.ndarray) -> np.ndarray:
    """Boolean ``[D, H, W]``: voxels where any channel of ``images`` ``[C, D, H, W]`` is non-zero."""
    mask = images[0] != 0
    for channel in images[1:]:  # channel by channel: no [C, D, H, W] temporary
        mask |= channel != 0
    return mask


def intensity_window(
    images: np.ndarray, mask: np.ndarray, percentiles: tuple[float, float] = PERCENTILES
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(low, high)`` percentiles of the brain voxels.

    Args:
        images: ``[C, D, H, W]``.
        mask: boolean ``[D, H, W]`` brain mask (non-empty).

    Returns:
        float64 ``low [C]`` and ``high [C]``.
    """
    inside = np.flatnonzero(mask)
    window = np.array([np.percentile(np.take(channel.reshape(-1), inside), percentiles) for channel in images])
    return window[:, 0], window[:, 1]


def apply_window(images: np.ndarray, mask: np.ndarray, low: np.ndarray, high: np.ndarray, *,
                 channel_axis: int = 0) -> torch.Tensor:
    """Map ``low``/``high`` per channel to 0/1, clip to [0, 1], zero outside ``mask``.

    Args:
        images: ``[C, *spatial]`` (or channels on ``channel_axis``, e.g. ``[N, C, H, W]``
            with ``channel_axis=1``); converted to a new float32 tensor, then changed in place.
        mask: boolean, broadcastable to ``images`` without the channel axis.

    Returns:
        float32 tensor shaped like ``images``.
    """
    span = high - low
    scale = np.divide(1.0, span, out=np.zeros_like(span), where=span > 0)
    shape = [1] * images.ndim
    shape[channel_axis] = -1
    x = torch.from_numpy(np.array(images, dtype=np.float32, copy=True))
    x.sub_(torch.from_numpy(low.astype(np.float32)).view(shape))
    x.mul_(torch.from_numpy(scale.astype(np.float32)).view(shape)).clamp_(0.0, 1.0)
    return x.mul_(torch.from_numpy(np.expand_dims(mask, channel_axis)))


def normalise_intensities(
    images: np.ndarray, mask: np.ndarray, percentiles: tuple[float, float] = PERCENTILES
) -> np.ndarray:
    """Map each channel's brain percentiles to [0, 1] (see module docstring).

    Args:
        images: float ``[C, D, H, W]``.
        mask: boolean ``[D, H, W]`` brain mask.

    Returns:
        float32 ``[C, D, H, W]`` in [0, 1], 0 outside ``mask``.
    """
    if not mask.any():
        return np.zeros(images.shape, dtype=np.float32)
    return apply_window(images, mask, *intensity_window(images, mask, percentiles)).numpy()


def _resize(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Resize float ``[N, C, *spatial]`` to ``size`` (see module docstring for the modes)."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    if x.ndim == 4:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    shrinking = all(s <= t for s, t in zip(size, x.shape[2:]))
    if shrinking:
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode="trilinear", align_corners=False)


def resize_images(images: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """Resize float ``[N, C, *spatial]`` to ``[N, C, *size]`` (float32)."""
    with torch.no_grad():
        return _resize(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)), size).numpy()


def resize_labels(labels: np.ndarray, size: tuple[int, ...], n_classes: int = len(LABEL_NAMES)) -> np.ndarray:
    """Resize integer ``[N, *spatial]`` labels to ``[N, *size]`` (uint8) via one-hot + argmax.

    Samples that are all background stay all background without being resampled.
    """
    if tuple(labels.shape[1:]) == tuple(size):
        return labels.astype(np.uint8, copy=False)
    out = np.zeros((len(labels), *size), dtype=np.uint8)
    labelled = labels.reshape(len(labels), -1).any(axis=1)
    if labelled.any():
        with torch.no_grad():
            lab = torch.from_numpy(labels[labelled])[:, None]
            classes = torch.arange(1, n_classes, dtype=lab.dtype).view(1, -1, *[1] * (lab.ndim - 2))
            foreground = _resize((lab == classes).float(), size)  # resizing is linear: the
            background = 1.0 - foreground.sum(dim=1, keepdim=True)  # maps keep summing to 1
            # argmax over a contiguous last axis: ~10x faster than over dim 1 on CPU
            scores = torch.cat([background, foreground], dim=1).movedim(1, -1).contiguous()
            out[labelled] = scores.argmax(dim=-1).to(torch.uint8).numpy()
    return out


@dataclass
class CaseSamples:
    """Samples cut from one case, ready for a store.

    Attributes:
        case_id: the case's id.
        images: float32 ``[n, C, *size]`` in [0, 1].
        labels: uint8 ``[n, *size]`` canonical labels.
        slices: int ``[n]`` axial slice index per sample (-1 for 3D volumes).
        spacing: voxel size in mm ``(z, y, x)`` of the samples' grid.
    """

    case_id: str
    images: np.ndarray
    labels: np.ndarray
    slices: np.ndarray
    spacing: tuple[float, float, float]


def tumour_centre_slice(label: np.ndarray) -> int | None:
    """The axial index of the WT centroid of ``label`` ``[D, H, W]`` (rounded), or None without tumour.

    A longitudinal subject's 2D sample is this slice of its earliest tumour-bearing visit, at
    every visit (``data prepare --slices centre``; the longitudinal phantom grades it).
    """
    per_slice = np.count_nonzero(label.reshape(label.shape[0], -1), axis=1)
    total = int(per_slice.sum())
    if total == 0:
        return None
    centroid = float(np.dot(np.arange(len(per_slice), dtype=np.float64), per_slice)) / total
    return int(np.clip(np.floor(centroid + 0.5), 0, len(per_slice) - 1))


def case_to_slices(case: Case, size: int, min_brain_fraction: float = MIN_BRAIN_FRACTION, *,
                   only: int | None = None) -> CaseSamples:
    """Normalise ``case`` and cut the axial slices that are more than ``min_brain_fraction`` brain.

    With ``only``, cut just that axial index, however much brain it holds (the intensity
    window still comes from the whole brain; an index outside the volume is a ``ValueError``).
    """
    mask = brain_mask(case.images)
    if only is None:
        keep = np.flatnonzero(mask.mean(axis=(1, 2)) > min_brain_fraction)
    elif not 0 <= only < mask.shape[0]:
        raise ValueError(f"slice {only} is outside the case's {mask.shape[0]} axial slices")
    else:
        keep = np.array([only], dtype=np.int64) if mask.any() else np.zeros(0, dtype=np.int64)
    target = (size, size)
    _, _, height, width = case.images.shape
    sz, sy, sx = case.spacing
    images = np.empty((len(keep), len(case.channels), *target), dtype=np.float32)
    if len(keep):  # the window comes from the whole brain; only the kept slices are mapped
        window = intensity_window(case.images, mask)
        by_slice = case.images.transpose(1, 0, 2, 3)
        for start in range(0, len(keep), SLICE_BLOCK):  # small blocks: buffers stay cache- and
            block = keep[start : start + SLICE_BLOCK]  # allocator-friendly at any volume size
            slices = apply_window(by_slice[block], mask[block], *window, channel_axis=1)
            with torch.no_grad():
                images[start : start + len(block)] = _resize(slices, target).numpy()
    return CaseSamples(
        case_id=case.id,
        images=images,
        labels=resize_labels(case.label[keep], target),
        slices=keep.astype(np.int64),
        spacing=(sz, sy * height / size, sx * width / size),
    )


def case_to_volume(case: Case, size: int) -> CaseSamples:
    """Normalise ``case``, crop to the brain box, pad to a cube and resize to ``size³``."""
    mask = brain_mask(case.images)
    if not mask.any():
        return CaseSamples(case.id, np.zeros((0, len(case.channels), size, size, size), np.float32),
                           np.zeros((0, size, size, size), np.uint8), np.zeros(0, np.int64), case.spacing)
    images = normalise_intensities(case.images, mask)
    box = tuple(slice(int(idx.min()), int(idx.max()) + 1) for idx in np.nonzero(mask))
    images, label = images[(slice(None), *box)], case.label[box]
    side = max(label.shape)
    pad = [((side - n) // 2, side - n - (side - n) // 2) for n in label.shape]
    images = np.pad(images, [(0, 0), *pad])
    label = np.pad(label, pad)
    target = (size, size, size)
    factor = side / size
    return CaseSamples(
        case_id=case.id,
        images=resize_images(images[None], target),
        labels=resize_labels(label[None], target),
        slices=np.array([-1], dtype=np.int64),
        spacing=tuple(s * factor for s in case.spacing),  # type: ignore[arg-type]
    )
