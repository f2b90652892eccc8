"""The projection's loss, one value per image, with no downloaded weights.

Every term is computed per image and the batch loss is their **sum** over images: image
``i``'s gradient depends on image ``i`` alone and Adam normalises each parameter element on
its own, so a batch optimises each image exactly as it would be optimised alone.

Terms of image ``i`` (synthesised ``x``, target ``t``, both encoded in ``[-1, 1]``):

* ``l2`` · mean of ``(x − t)²`` and ``l1`` · mean of ``|x − t|`` over the encoded channels
  (image and mask) and pixels, each mask channel's error weighted ``mask_weight`` (1: every
  channel alike);
* ``ms_ssim`` · ``(1 − MS-SSIM)`` of ``(x + 1)/2`` against ``(t + 1)/2``
  (:func:`synthmed.metrics.ms_ssim.ms_ssim`, 7-pixel window, data range 1);
* ``perceptual`` · the domain encoder's feature distance
  (:class:`~synthmed.features.perceptual.DomainPerceptual`);
* ``noise_regularisation`` · the noise maps' multi-scale autocorrelation penalty
  (:func:`noise_penalty`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from synthmed.features.perceptual import DomainPerceptual, per_image_mean
from synthmed.progression.config import ProjectionConfig


def psnr(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of each encoded sample against its target, on the ``[0, 1]`` scale
    (``(x + 1)/2``; peak 1): ``10 · log10(1 / MSE)`` over channels and pixels, ``[B]``
    (``inf`` for an exact match)."""
    mse = per_image_mean(((x - target) / 2).float().square())
    return 10 * torch.log10(1 / mse)


def noise_penalty(noise: Sequence[torch.Tensor]) -> torch.Tensor:
    """NVlabs' noise regulariser of each image, ``[B]``: for every noise map ``[B, 1, H, W]`` and
    each of its 2×2 average-pooled versions down to 8 pixels, the squared mean of the map times
    itself shifted by one pixel (circularly) along W and along H, summed. Uncorrelated noise
    scores near 0; maps that smuggle image structure score high."""
    total = None
    for n in noise:
        while True:
            term = per_image_mean(n * torch.roll(n, 1, dims=3)).square() + per_image_mean(n * torch.roll(n, 1, dims=2)).square()
            total = term if total is None else total + term
            if n.shape[2] <= 8:
                break
            n = F.avg_pool2d(n, kernel_size=2)
    if total is None:
        raise ValueError("noise_penalty needs at least one noise map")
    return total


@torch.no_grad()
def normalise_noise(noise: Sequence[torch.Tensor]) -> None:
    """In place, per image and map: zero mean and unit mean square (NVlabs, after each step)."""
    for n in noise:
        n -= n.mean(dim=(1, 2, 3), keepdim=True)
        n *= n.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()


class ProjectionLoss:
    """The weighted terms of :class:`~synthmed.progression.config.ProjectionConfig` against fixed targets.

    Args:
        config: the weights.
        target: encoded targets ``[B, C + L, R, R]``.
        image_channels: ``C`` (the channels after it are the mask's, weighted ``config.mask_weight``).
        perceptual: the domain perceptual distance (required when ``config.perceptual > 0``).

    Raises:
        ValueError: a perceptual weight without a perceptual module.
    """

    def __init__(self, config: ProjectionConfig, target: torch.Tensor, image_channels: int,
                 perceptual: DomainPerceptual | None = None):
        if config.perceptual > 0 and perceptual is None:
            raise ValueError("a perceptual weight needs the domain encoder (DomainPerceptual)")
        if not 1 <= image_channels <= target.shape[1]:
            raise ValueError(f"image_channels {image_channels} does not fit targets of {target.shape[1]} channels")
        self.config, self.target = config, target
        self.channel_weights = None
        if config.mask_weight != 1:
            weights = torch.ones(target.shape[1], dtype=target.dtype, device=target.device)
            weights[image_channels:] = config.mask_weight
            self.channel_weights = weights.view(1, -1, *([1] * (target.ndim - 2)))
        self.perceptual = perceptual if config.perceptual > 0 else None
        with torch.no_grad():
            self.target_features = None if self.perceptual is None else self.perceptual.features(target)

    def terms(self, x: torch.Tensor, noise: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """The weighted terms with a non-zero weight, each ``[B]``, of synthesised ``x`` and its noise maps."""
        from synthmed.metrics.ms_ssim import ms_ssim

        c, t = self.config, self.target
        out: dict[str, torch.Tensor] = {}
        if c.l2 > 0:
            out["l2"] = c.l2 * per_image_mean(self._weighted((x - t).square()))
        if c.l1 > 0:
            out["l1"] = c.l1 * per_image_mean(self._weighted((x - t).abs()))
        if c.ms_ssim > 0:
            out["ms_ssim"] = c.ms_ssim * (1 - ms_ssim((x + 1) / 2, (t + 1) / 2, data_range=1.0))
        if self.perceptual is not None:
            out["perceptual"] = c.perceptual * self.perceptual(x, self.target_features)
        if c.noise_regularisation > 0 and noise:
            out["noise"] = c.noise_regularisation * noise_penalty(noise)
        if not out:
            raise ValueError("every projection loss weight is 0")
        return out

    def _weighted(self, error: torch.Tensor) -> torch.Tensor:
        """``error`` ``[B, C + L, R, R]`` with each mask channel weighted ``mask_weight``."""
        return error if self.channel_weights is None else error * self.channel_weights
