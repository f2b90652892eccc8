"""Training augmentation on the device, batched, with every random number from :class:`StepRandom`.

The reference study's augmentations (Akbar et al. 2024), nnU-Net-like probabilities:

=================  =======================================================  ===========
augmentation       what                                                     probability
=================  =======================================================  ===========
rotation + scale   one affine resampling: rotation uniform in ±30° (2D: in   ``p_affine``
                   plane; 3D: about each axis), isotropic scale uniform in
                   [0.9, 1.1]; images bilinear, labels nearest, zeros
                   outside (MONAI ``AffineTransform``)
gamma              ``x ← x ** γ``, γ uniform in [0.7, 1.5] (images in [0, 1])  ``p_gamma``
blur               Gaussian, σ uniform in [0.5, 1.0] voxels (separable,       ``p_blur``
                   zero-padded like MONAI ``GaussianFilter``, one grouped
                   convolution per axis for the whole batch)
noise              additive Gaussian, σ uniform in [0, 0.1]                  ``p_noise``
=================  =======================================================  ===========

Each sample decides each augmentation independently. The numbers of sample ``j`` depend only
on ``(seed, step, j)`` (drawn for the global batch by :class:`StepRandom`), so augmentation is
reproducible on resume and does not depend on the number of processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from monai.networks.layers import AffineTransform

from synthmed.training.seeding import StepRandom


@dataclass(frozen=True)
class AugmentOptions:
    """Ranges and probabilities (see the module docstring)."""

    rotate_deg: float = 30.0
    scale: tuple[float, float] = (0.9, 1.1)
    gamma: tuple[float, float] = (0.7, 1.5)
    blur_sigma: tuple[float, float] = (0.5, 1.0)
    noise_std: tuple[float, float] = (0.0, 0.1)
    p_affine: float = 0.5
    p_gamma: float = 0.3
    p_blur: float = 0.2
    p_noise: float = 0.15


def _rotation(angles: torch.Tensor, dims: int) -> torch.Tensor:
    """Rotation matrices ``[B, dims, dims]`` (2D: ``angles[:, 0]``; 3D: about the three axes in turn)."""
    c, s = torch.cos(angles), torch.sin(angles)
    b = angles.shape[0]
    if dims == 2:
        return torch.stack([torch.stack([c[:, 0], -s[:, 0]], -1), torch.stack([s[:, 0], c[:, 0]], -1)], 1)
    out = torch.eye(3, device=angles.device).expand(b, 3, 3)
    for axis in range(3):
        i, j = [a for a in range(3) if a != axis]
        r = torch.eye(3, device=angles.device).repeat(b, 1, 1)
        r[:, i, i], r[:, i, j], r[:, j, i], r[:, j, j] = c[:, axis], -s[:, axis], s[:, axis], c[:, axis]
        out = out @ r
    return out


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, radius: int | None = None) -> torch.Tensor:
    """Blur each sample of ``images [B, C, *spatial]`` with its own Gaussian ``sigma [B]`` (voxels).

    Separable, normalised, zero padding; one grouped convolution per axis for the batch. The
    kernel spans ``±radius`` voxels (default ``ceil(4·max σ)``).
    """
    b, c, *spatial = images.shape
    dims = len(spatial)
    r = int(radius) if radius is not None else max(1, math.ceil(4 * float(sigma.max())))
    x = torch.arange(-r, r + 1, device=images.device, dtype=images.dtype)
    s = sigma.to(images.dtype).clamp_min(1e-3)[:, None]
    k = torch.exp(-(x[None] ** 2) / (2 * s**2))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # [B·C, K]
    conv = (F.conv1d, F.conv2d, F.conv3d)[dims - 1]
    out = images.reshape(1, b * c, *spatial)
    for axis in range(dims):
        shape = [b * c, 1] + [1] * dims
        shape[2 + axis] = 2 * r + 1
        pad = [0] * dims
        pad[axis] = r
        out = conv(out, k.view(shape), padding=tuple(pad), groups=b * c)
    return out.reshape(images.shape)


def _lerp(u: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    return bounds[0] + (bounds[1] - bounds[0]) * u


def augment(images: torch.Tensor, labels: torch.Tensor, random: StepRandom,
            options: AugmentOptions = AugmentOptions()) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch.

    Args:
        images: float ``[B, C, *spatial]`` (2D or 3D), intensities in [0, 1].
        labels: integer ``[B, *spatial]`` canonical labels.
        random: this step's :class:`StepRandom`.
        options: ranges and probabilities.

    Returns:
        ``(images, labels)`` of the same shapes and dtypes (new tensors where changed).
    """
    b, dims = images.shape[0], images.ndim - 2
    u = random.rand((b, 12)).to(images.device)  # one draw: every per-sample number
    noise = random.randn(tuple(images.shape)).to(images.device, images.dtype)
    images = images.clone()
    hit = u[:, 0] < options.p_affine
    if hit.any():
        idx = hit.nonzero().flatten()
        angles = math.radians(options.rotate_deg) * (2 * u[idx, 1:4] - 1)
        scale = _lerp(u[idx, 4], options.scale)
        theta = torch.zeros(len(idx), dims, dims + 1, device=images.device)
        theta[:, :, :dims] = _rotation(angles, dims) / scale[:, None, None]  # output → input coordinates
        warp_img = AffineTransform(normalized=True, mode="bilinear", padding_mode="zeros", align_corners=False)
        warp_lab = AffineTransform(normalized=True, mode="nearest", padding_mode="zeros", align_corners=False)
        images[idx] = warp_img(images[idx], theta.to(images.dtype))
        lab = warp_lab(labels[idx][:, None].float(), theta)[:, 0]
        labels = labels.clone()
        labels[idx] = lab.round().to(labels.dtype)
    gamma = torch.where(u[:, 5] < options.p_gamma, _lerp(u[:, 6], options.gamma), torch.ones_like(u[:, 6]))
    images = images.clamp_min(0).pow(gamma.view(b, *([1] * (dims + 1))).to(images.dtype))
    blur = (u[:, 7] < options.p_blur).nonzero().flatten()
    if len(blur):
        radius = max(1, math.ceil(4 * options.blur_sigma[1]))  # fixed: results do not depend on the batch split
        images[blur] = gaussian_blur(images[blur], _lerp(u[blur, 8], options.blur_sigma), radius)
    std = torch.where(u[:, 9] < options.p_noise, _lerp(u[:, 10], options.noise_std), torch.zeros_like(u[:, 10]))
    images = images + std.view(b, *([1] * (dims + 1))).to(images.dtype) * noise
    return images, labels
