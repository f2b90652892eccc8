"""Diversity of a sample set: mean MS-SSIM between random pairs of its images (lower = more diverse)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch


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
