"""Diversity of a sample set: mean MS-SSIM between random pairs of its images (lower = more diverse).

Conventions: MS-SSIM is :func:`synthmed.metrics.ms_ssim.ms_ssim` with a 7-pixel window
(:data:`KERNEL`), in 2D for slices and in 3D for whole volumes (``spatial_dims``), its scales
chosen by the smallest spatial side. Pairs are seeded draws of two distinct samples
(:func:`diversity_pairs`); given ``groups`` (the samples' patients), of two samples of
*different* patients, so a real set's neighbouring slices of one patient are never a pair. A
generator's samples are each their own patient, and without ``groups`` or with distinct ones
the draw is the same.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from synthmed.metrics.ms_ssim import ms_ssim, ms_ssim_scales

#: The Gaussian window of the diversity's MS-SSIM, in pixels.
KERNEL = 7


def diversity_pairs(n: int, pairs: int, *, seed: int = 0, groups: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """``pairs`` seeded pairs ``(i, j)`` (int64 positions in ``0 … n - 1``) of distinct samples.

    ``i`` is uniform; ``j`` uniform among the other samples, or among the samples of the other
    groups when ``groups`` (``[n]`` labels, e.g. patient ids) holds repeated labels. Empty arrays
    when no pair exists (``n < 2``, or a single group).
    """
    rng = np.random.default_rng(seed)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    codes = None
    if groups is not None:
        _, codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)
        if codes.max(initial=0) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        if len(np.unique(codes)) == n:  # every sample its own group: the plain draw
            codes = None
    i = rng.integers(0, n, size=pairs)
    if codes is None:
        return i, (i + rng.integers(1, n, size=pairs)) % n
    order = np.argsort(codes, kind="stable")  # each group's samples contiguous in order
    counts = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    g = codes[i]
    u = rng.integers(0, n - counts[g])  # the u-th sample outside i's group
    return i, order[np.where(u < starts[g], u, u + counts[g])]


def diversity_plan(n: int, spatial: tuple[int, ...], *, pairs: int = 100, seed: int = 0, groups: Any = None
                   ) -> tuple[np.ndarray, np.ndarray, int] | None:
    """``(i, j, scales)`` of the diversity of ``n`` samples of spatial shape ``spatial``
    (:func:`diversity_pairs`, :func:`~synthmed.metrics.ms_ssim.ms_ssim_scales`), or ``None``
    with a warning saying why it cannot be measured (fewer than 2 samples or patients, images
    too small for one scale)."""
    if n < 2:
        warnings.warn(f"MS-SSIM diversity needs at least 2 samples, got {n}", stacklevel=3)
        return None
    scales = ms_ssim_scales(min(spatial), KERNEL)
    if not scales:
        warnings.warn(f"MS-SSIM needs images larger than {KERNEL - 1} pixels, got {min(spatial)}", stacklevel=3)
        return None
    i, j = diversity_pairs(n, pairs, seed=seed, groups=groups)
    if not len(i):
        warnings.warn("MS-SSIM diversity needs samples of at least 2 patients", stacklevel=3)
        return None
    return i, j, scales


#: What :func:`ms_ssim_diversity` returns when nothing can be measured.
UNMEASURED: dict[str, Any] = {"ms_ssim": None, "pairs": 0, "scales": 0}


def pair_ms_ssim(x: Any, y: Any, *, spatial_dims: int = 2, device: str | torch.device = "cpu") -> torch.Tensor:
    """MS-SSIM (no gradients, float32, computed on ``device``) of each pair ``(x[k], y[k])``,
    ``[b, C, *spatial]`` in [0, 1]: ``[b]`` on the CPU."""
    def tensor(a: Any) -> torch.Tensor:
        a = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.asarray(a))
        return a.to(device=device, dtype=torch.float32)

    with torch.no_grad():
        return ms_ssim(tensor(x), tensor(y), data_range=1.0, kernel=KERNEL, spatial_dims=spatial_dims).cpu()


def ms_ssim_diversity(images: Any, *, pairs: int = 100, seed: int = 0, spatial_dims: int = 2,
                      groups: Any = None) -> dict[str, Any]:
    """Mean MS-SSIM (MONAI) over random pairs of distinct samples of ``images`` ``[N, C, *spatial]``
    in [0, 1]: lower = more diverse (a collapsed generator scores near 1).

    ``spatial_dims``: 2 for slices, 3 for volumes ``[N, C, D, H, W]``; ``groups``: the samples'
    patients, pairs then joining different patients (see the module).

    Returns:
        ``{"ms_ssim": mean or None, "pairs": used, "scales": s}``.
    """
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images, dtype=torch.float32)
    plan = diversity_plan(len(x), tuple(x.shape[2:]), pairs=pairs, seed=seed, groups=groups)
    if plan is None:
        return dict(UNMEASURED)
    i, j, scales = plan
    vals = pair_ms_ssim(x[torch.from_numpy(i)], x[torch.from_numpy(j)], spatial_dims=spatial_dims)
    return {"ms_ssim": float(vals.mean()), "pairs": int(len(i)), "scales": scales}
