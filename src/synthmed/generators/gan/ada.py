"""Adaptive discriminator augmentation (ADA, Karras et al. 2020) for jointly encoded tensors.

Every image D sees — real or fake, in D and G steps — goes through :class:`AugmentPipe`.
Each transform is applied to each sample with probability ``p``:

* geometric (one affine resampling, identical for every channel, the label channel
  included): x-flip, 90° rotations, integer translation (±12.5 %), isotropic scaling
  (lognormal, σ = 0.2·ln 2), rotation (uniform), anisotropic scaling, fractional translation
  (σ = 0.125); reflection padding, bilinear sampling, differentiable in the input;
* colour, on the image channels only (the label channel keeps its levels): brightness
  (+N(0, 0.2)) and contrast (×lognormal, σ = 0.5·ln 2, around the per-sample mean).

Mirror augmentation of the data set (``xflip`` with probability ½, independent of ``p``)
is ``mirror=True``; like NVlabs' ``--mirror`` (a data set of the images and their mirror
images) it flips the *reals* only. Flipping the fakes as well would let D see only the
mirror-symmetrised fake distribution, and a generator that puts every left-right feature on
one side would pass for a diverse one (measured: StyleGAN's tumour positions collapsed
along x, not along y).

``p`` adapts with the overfitting heuristic ``r_t = E[sign(D(real))]``: every ``interval``
steps ``p ← clip(p + sign(r_t - target) · N / (speed_kimg · 1000), 0, 1)``, ``N`` the images
seen since the last update. ``p``, the sign sum and count are buffers, so checkpoints and
resume keep them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from synthmed.training.seeding import Draws


def _eye(b: int, device: torch.device) -> torch.Tensor:
    return torch.eye(3, device=device).repeat(b, 1, 1)


def _translate(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    m = _eye(tx.shape[0], tx.device)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def _scale(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    m = _eye(sx.shape[0], sx.device)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def _rotate(theta: torch.Tensor) -> torch.Tensor:
    m = _eye(theta.shape[0], theta.device)
    c, s = torch.cos(theta), torch.sin(theta)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s, s, c
    return m


class AugmentPipe(nn.Module):
    """Differentiable augmentation of ``[B, C, H, W]`` tensors in ``[-1, 1]`` (module docstring).

    Args:
        n_image_channels: the first channels get colour transforms; the rest (labels) do not.
        p: initial augmentation probability.
        target: the ``r_t`` the heuristic steers to (0.6).
        interval: steps between ``p`` updates.
        speed_kimg: thousands of images for ``p`` to move from 0 to 1.
        mirror: random x-flips of the reals with probability ½ (dataset mirroring), even at ``p = 0``.
        adaptive: adjust ``p``; otherwise ``p`` stays fixed.
    """

    def __init__(self, n_image_channels: int, *, p: float = 0.0, target: float = 0.6, interval: int = 4,
                 speed_kimg: float = 100.0, mirror: bool = True, adaptive: bool = True):
        super().__init__()
        self.n_image_channels, self.target, self.interval = n_image_channels, target, interval
        self.speed_kimg, self.mirror, self.adaptive = speed_kimg, mirror, adaptive
        self.register_buffer("p", torch.tensor(float(p)))
        self.register_buffer("sign_sum", torch.zeros((), dtype=torch.float64))
        self.register_buffer("sign_count", torch.zeros((), dtype=torch.float64))

    # -- the heuristic

    @torch.no_grad()
    def accumulate(self, d_real: torch.Tensor) -> None:
        """Record ``sign(D(real))`` of a batch of real logits."""
        self.sign_sum += torch.sign(d_real.detach()).sum().double()
        self.sign_count += d_real.numel()

    @torch.no_grad()
    def update(self) -> float | None:
        """Adjust ``p`` from the signs recorded since the last update; return ``r_t`` (``None`` if none)."""
        if self.sign_count <= 0:
            return None
        rt = float(self.sign_sum / self.sign_count)
        if self.adaptive:
            step = math.copysign(1.0, rt - self.target) * float(self.sign_count) / (self.speed_kimg * 1000)
            self.p.copy_((self.p + step).clamp(0.0, 1.0))
        self.sign_sum.zero_()
        self.sign_count.zero_()
        return rt

    # -- the transforms

    def forward(self, x: torch.Tensor, draws: Draws, *, real: bool = True) -> torch.Tensor:
        """Augment ``x`` ``[B, C, H, W]``; every random number comes from ``draws``, per sample
        (a training step's :meth:`~synthmed.training.seeding.StepRandom.stream`: each rank
        draws its rows of one world-size-invariant draw). ``real``: ``x`` is training data (the
        mirror flips only reals; fakes get only the ``p`` transforms)."""
        p = float(self.p)
        mirror = self.mirror and real
        if p <= 0 and not mirror:
            return x
        b, device = x.shape[0], x.device

        def rand(*shape: int) -> torch.Tensor:
            return draws.rand((b, *shape)).to(device)

        def randn(*shape: int) -> torch.Tensor:
            return draws.randn((b, *shape)).to(device)

        def gate(values: torch.Tensor, neutral: float) -> torch.Tensor:
            return torch.where(rand() < p, values, torch.full_like(values, neutral))

        one = torch.ones(b, device=device)
        m = _eye(b, device)  # maps output coordinates ([-1, 1]) to input coordinates
        if mirror:
            m = m @ _scale(1 - 2 * (rand() < 0.5).float(), one)
        if p > 0:
            m = m @ _scale(1 - 2 * gate((rand() < 0.5).float(), 0), one)  # x-flip
            m = m @ _rotate(gate(torch.floor(rand() * 4), 0) * (math.pi / 2))  # 90° rotations
            h, w = x.shape[-2:]
            shift = torch.round((rand(2) * 2 - 1) * 0.125 * torch.tensor([w, h], device=device)) * 2
            shift = shift / torch.tensor([w, h], device=device)
            m = m @ _translate(gate(shift[:, 0], 0), gate(shift[:, 1], 0))  # integer translation
            s = torch.exp2(gate(randn() * 0.2, 0))
            m = m @ _scale(s, s)  # isotropic scaling
            m = m @ _rotate(gate((rand() * 2 - 1) * math.pi, 0))  # rotation
            a = torch.exp2(gate(randn() * 0.2, 0))
            m = m @ _scale(a, 1 / a)  # anisotropic scaling
            t = randn(2) * 0.125 * 2
            m = m @ _translate(gate(t[:, 0], 0), gate(t[:, 1], 0))  # fractional translation
        grid = F.affine_grid(m[:, :2], list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        if p > 0:
            k = self.n_image_channels
            image, rest = x[:, :k], x[:, k:]
            image = image + gate(randn() * 0.2, 0)[:, None, None, None] * 2  # brightness (×2: [-1, 1] range)
            c = torch.exp2(gate(randn() * 0.5, 0))[:, None, None, None]
            mean = image.mean(dim=(1, 2, 3), keepdim=True)
            image = (image - mean) * c + mean  # contrast
            x = torch.cat([image, rest], dim=1)
        return x
