"""MS-SSIM per sample pair (MONAI's implementation), differentiable, with the scales an image size allows.

Conventions: a Gaussian window of ``kernel`` pixels (σ = 1.5); the number of scales ``s`` is the
largest (at most 5) whose coarsest image is still wider than ``kernel - 1`` pixels
(``side // 2**(s - 1) > kernel - 1``) and that MONAI's size check admits (``side // (s - 1)**2 >
kernel - 1``, stricter for 4 scales: sides 56 to 62 get 3); 2D and 3D alike, ``side`` being the
smallest spatial side. MONAI's (Wang et al. 2003) scale weights ``0.0448, 0.2856, 0.3001, 0.2363, 0.1333`` are cut
to that many and renormalised to sum to 1. Negative contrast/structure terms are clipped at 0
(MONAI), so the value is in ``[0, 1]`` and 1 for identical images.
"""

from __future__ import annotations

import torch

#: MONAI's MS-SSIM scale weights, finest first.
MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim_scales(side: int, kernel: int = 7) -> int:
    """Scales of MS-SSIM for images of the smallest side ``side``: the largest ``s <= 5`` with
    ``side // 2**(s - 1) > kernel - 1`` and ``side // max(1, s - 1)**2 > kernel - 1`` (MONAI's
    check of its input size); 0 when even one scale does not fit."""
    def fits(s: int) -> bool:
        return side // 2 ** (s - 1) > kernel - 1 and side // max(1, s - 1) ** 2 > kernel - 1

    scales = 0
    while scales < len(MS_SSIM_WEIGHTS) and fits(scales + 1):
        scales += 1
    return scales


def ms_ssim_weights(side: int, kernel: int = 7) -> tuple[float, ...]:
    """The renormalised scale weights for ``side`` (see the module docstring); empty if none fits."""
    weights = MS_SSIM_WEIGHTS[: ms_ssim_scales(side, kernel)]
    return tuple(w / sum(weights) for w in weights)


def ms_ssim(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0, kernel: int = 7,
            spatial_dims: int = 2) -> torch.Tensor:
    """MS-SSIM of each pair ``(x[i], y[i])``, averaged over channels: float ``[B]`` in ``[0, 1]``.

    Differentiable in both arguments (a projection loss uses ``1 - ms_ssim``); sample ``i``'s
    value depends on sample ``i`` alone.

    Args:
        x, y: ``[B, C, *spatial]`` with values spanning ``data_range``.
    Raises:
        ValueError: shapes differ, or the images are too small for one scale (side <= ``kernel - 1``).
    """
    from monai.metrics.regression import compute_ms_ssim

    if x.shape != y.shape:
        raise ValueError(f"MS-SSIM needs two batches of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    side = min(x.shape[2:])
    weights = ms_ssim_weights(side, kernel)
    if not weights:
        raise ValueError(f"MS-SSIM needs images larger than {kernel - 1} pixels, got {side}")
    return compute_ms_ssim(x, y, spatial_dims=spatial_dims, data_range=data_range, kernel_size=kernel,
                           weights=weights)[:, 0]
