"""Shift- and flip-tolerant memorization search: the best correlation over small shifts and the mirror.

**Shift- and flip-tolerant similarity** (:func:`nearest_correlation_tolerant`, the gate's
``--similarity shift-flip``): the maximum Pearson correlation over variants of each synthetic
sample — every shift by ``(dy, dx)`` in ``[-s, s]²`` pixels of the in-plane axes (y, x;
zero-filled, so the brain's zero background fills the border), of the sample and of its
left-right mirror (x reversed) — against every training sample. ``V = 2 (2s + 1)²`` variants
(50 for ``s = 2``), so it costs about ``V`` times the pixel search. It catches a mirrored or
slightly shifted copy, which the pixel correlation misses; it does not catch rotations, scaling,
larger shifts, intensity remapping or deformations.

The variants are searched with :func:`synthmed.metrics.memorization.nearest_correlation`;
inputs and returned indices follow its conventions.
"""

from __future__ import annotations

import numpy as np
import torch

from synthmed.metrics.memorization import nearest_correlation
from synthmed.metrics.sources import as_source

#: Default largest shift, in pixels along each in-plane axis, of the ``shift-flip`` similarity.
DEFAULT_MAX_SHIFT = 2


def shift_flip_variants(images: torch.Tensor, max_shift: int = DEFAULT_MAX_SHIFT) -> torch.Tensor:
    """Every shifted and mirrored variant of each image.

    Args:
        images: ``[b, C, *spatial]`` (2D ``[H, W]`` or 3D ``[D, H, W]``).
        max_shift: largest shift ``s`` in pixels along each of the last two axes (y, x).

    Returns:
        ``[b, V, C, *spatial]`` with ``V = 2 (2s + 1)²``: variant ``k`` is the image (``k < V/2``)
        or its left-right mirror (x reversed), shifted by :func:`variant_shift` ``(k)``; pixels
        shifted in are 0. Variant 0 is the image itself.
    """
    s = int(max_shift)
    if s < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    h, w = images.shape[-2:]
    out = []
    for image in (images, images.flip(-1)):
        padded = torch.nn.functional.pad(image, (s, s, s, s))  # zeros around y and x
        for dy, dx in shift_offsets(s):  # variant[y, x] = image[y - dy, x - dx]
            out.append(padded[..., s - dy : s - dy + h, s - dx : s - dx + w])
    return torch.stack(out, dim=1)


def shift_offsets(max_shift: int) -> list[tuple[int, int]]:
    """``(dy, dx)`` pairs in ``[-s, s]²``, ``(0, 0)`` first, then row by row: variant ``k`` of an
    image (``k < V/2``) or of its mirror (``k - V/2``) is shifted by pair ``k mod (V/2)``."""
    r = range(-max_shift, max_shift + 1)
    return [(0, 0)] + [(dy, dx) for dy in r for dx in r if (dy, dx) != (0, 0)]


def variant_shift(k: int, max_shift: int = DEFAULT_MAX_SHIFT) -> tuple[bool, int, int]:
    """``(mirrored, dy, dx)`` of variant ``k`` of :func:`shift_flip_variants`."""
    shifts = shift_offsets(int(max_shift))
    mirrored, j = divmod(int(k), len(shifts))
    return bool(mirrored), *shifts[j]


def nearest_correlation_tolerant(
    synthetic: object,
    train: object,
    *,
    max_shift: int = DEFAULT_MAX_SHIFT,
    block: int = 512,
    train_batch: int = 256,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximum Pearson correlation (joint) of each synthetic sample's shifted and mirrored
    variants (:func:`shift_flip_variants`) with any training sample.

    The variants of ``block // V`` synthetic samples at a time go through
    :func:`nearest_correlation` as one block, so the cost is about ``V`` times the pixel
    search's (the training samples stream once per block).

    Returns:
        ``(values, indices, variants)``: float64 ``[M]``, int64 ``[M]`` training positions and
        int64 ``[M]`` the variant reaching the maximum (see :func:`variant_shift`; ties go to the
        lowest variant, so an exact copy reports variant 0). ``values`` >= the pixel maximum.
    """
    m, shape_s, syn_batches = as_source(synthetic)
    v = 2 * (2 * int(max_shift) + 1) ** 2
    per = max(1, block // v)
    values, indices, variants = np.empty(m), np.zeros(m, np.int64), np.zeros(m, np.int64)
    start = 0
    for syn in syn_batches(per):
        b = syn.shape[0]
        rows = shift_flip_variants(torch.from_numpy(np.ascontiguousarray(syn, dtype=np.float32)), max_shift)
        vals, idx = nearest_correlation(rows.reshape(b * v, *shape_s), train, mode="joint", block=b * v,
                                        train_batch=train_batch, device=device, dtype=dtype)
        vals, idx = vals.reshape(b, v), idx.reshape(b, v)
        best = vals.argmax(axis=1)  # first maximum: the lowest variant
        values[start : start + b] = vals[np.arange(b), best]
        indices[start : start + b] = idx[np.arange(b), best]
        variants[start : start + b] = best
        start += b
    return values, indices, variants
