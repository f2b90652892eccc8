"""Diversity of a sample set: mean MS-SSIM between random pairs of its images (lower = more diverse)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from synthmed.metrics.ms_ssim import ms_ssim, ms_ssim_scales


def ms_ssim_diversity(images: Any, *, pairs: int = 100, seed: int = 0, spatial_dims: int = 2) -> dict[str, Any]:
    """Mean MS-SSIM (MONAI) over random pairs of distinct samples of ``images`` ``[N, C, *spatial]``
    in [0, 1]: lower = more diverse (a collapsed generator scores near 1).

    Scales and weights: :func:`synthmed.metrics.ms_ssim.ms_ssim` with a 7-pixel kernel.

    Returns:
        ``{"ms_ssim": mean or None, "pairs": used, "scales": s}``.
    """
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images, dtype=torch.float32)
    if len(x) < 2:
        warnings.warn(f"MS-SSIM diversity needs at least 2 samples, got {len(x)}", stacklevel=2)
        return {"ms_ssim": None, "pairs": 0, "scales": 0}
    kernel = 7
    scales = ms_ssim_scales(min(x.shape[2:]), kernel)
    if not scales:
        warnings.warn(f"MS-SSIM needs images larger than {kernel - 1} pixels, got {min(x.shape[2:])}", stacklevel=2)
        return {"ms_ssim": None, "pairs": 0, "scales": 0}
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(x), size=pairs)
    j = (i + rng.integers(1, len(x), size=pairs)) % len(x)
    with torch.no_grad():
        vals = ms_ssim(x[torch.from_numpy(i)], x[torch.from_numpy(j)], data_range=1.0, kernel=kernel,
                       spatial_dims=spatial_dims)
    return {"ms_ssim": float(vals.mean()), "pairs": int(pairs), "scales": scales}
