"""Projecting a batch of encoded images into a StyleGAN's latent space: Adam on ``w`` (or ``w+``) and the noise maps.

Each image ``i`` of a batch has its own latent ``w_i`` ``[L, D]`` (starting at ``w_avg``), its
own noise maps (starting standard normal) and its own random stream,
``derive_seed(config.seed, IMAGE_STREAM, key_i)`` with ``key_i`` the caller's id of the image
(its sample index): it draws the image's initial noise maps, in layer order, then one
``[L, D]`` ``w`` noise per step. The loss is the sum over images of per-image losses
(:mod:`~synthmed.progression.losses`) and Adam's state is per element, so an image's
projection does not depend on the batch it is in (up to floating-point rounding of the
batched convolutions) — a batch only makes it faster.

Per step ``s`` (``t = s / steps``, :mod:`~synthmed.progression.schedule`): set the learning
rate, synthesise from ``w + noise(t)``, take an Adam step on the summed loss, re-normalise the
noise maps per image. The result is measured once more without the ``w`` noise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from synthmed.progression.config import ProjectionConfig
from synthmed.progression.losses import DomainPerceptual, ProjectionLoss, normalise_noise, psnr
from synthmed.progression.schedule import learning_rate, w_noise_scale
from synthmed.progression.synthesis import StyleSynthesis
from synthmed.training.seeding import derive_seed, make_generator

#: :func:`~synthmed.training.seeding.derive_seed` stream of the per-image draws.
IMAGE_STREAM = 2


@dataclass(frozen=True)
class Projection:
    """One projected batch, on the CPU.

    Attributes:
        w: float32 ``[B, L, D]``.
        noise: float32 ``[B, 1, H_i, W_i]`` per noise input (empty without noise optimisation).
        loss: float32 ``[B]``, each image's loss at the result.
        psnr: float32 ``[B]``, dB of the reconstruction against the target (``[0, 1]`` scale).
    """

    w: torch.Tensor
    noise: list[torch.Tensor]
    loss: torch.Tensor
    psnr: torch.Tensor


def image_generator(seed: int, key: int) -> torch.Generator:
    """The CPU generator of image ``key``'s draws."""
    return make_generator(derive_seed(seed, IMAGE_STREAM, int(key)))


def project_images(synthesis: StyleSynthesis, targets: torch.Tensor, keys: Sequence[int], config: ProjectionConfig,
                   *, w_avg: torch.Tensor, w_std: float, perceptual: DomainPerceptual | None = None,
                   on_step: Callable[[int], None] | None = None) -> Projection:
    """Project encoded ``targets`` ``[B, C + L_mask, R, R]`` (the module docstring).

    Args:
        synthesis: the generator's synthesis.
        targets: encoded images in ``[-1, 1]`` (:class:`~synthmed.data.encoding.JointEncoding`).
        keys: ``B`` ids of the images (their sample indices): they seed each image's draws.
        config: space, schedule and loss weights.
        w_avg, w_std: :meth:`StyleSynthesis.w_stats` (the start, and the scale of the ``w`` noise).
        perceptual: the domain perceptual distance, when ``config.perceptual > 0``.
        on_step: called with the step number (1-based) after each step.

    Raises:
        ValueError: targets of another shape than the synthesis's output, or ``len(keys) != B``.
    """
    b = len(targets)
    expected = (synthesis.channels, synthesis.resolution, synthesis.resolution)
    if targets.ndim != 4 or tuple(targets.shape[1:]) != expected:
        raise ValueError(f"targets must be [B, {', '.join(map(str, expected))}], got {tuple(targets.shape)}")
    if len(keys) != b:
        raise ValueError(f"{len(keys)} keys for {b} targets")
    device = synthesis.device
    gens = [image_generator(config.seed, k) for k in keys]
    layers, dim = synthesis.layers(config.space), synthesis.w_dim
    w = w_avg.float().reshape(1, 1, dim).repeat(b, layers, 1).to(device).requires_grad_(True)
    noise: list[torch.Tensor] = []
    if config.optimise_noise:
        noise = [torch.stack([torch.randn((1, h, wd), generator=g) for g in gens]).to(device).requires_grad_(True)
                 for h, wd in synthesis.noise_shapes]
    opt = torch.optim.Adam([w, *noise], lr=config.lr, betas=config.betas)
    loss_fn = ProjectionLoss(config, targets.to(device, torch.float32), synthesis.encoding.n_image_channels, perceptual)
    for step in range(config.steps):
        t = step / config.steps
        for group in opt.param_groups:
            group["lr"] = learning_rate(t, config)
        scale = w_noise_scale(t, config, w_std)
        w_in = w
        if scale > 0:
            w_in = w + torch.stack([torch.randn((layers, dim), generator=g) for g in gens]).to(device) * scale
        x = synthesis.synthesize(w_in, noise or None)
        loss = torch.stack(list(loss_fn.terms(x, noise).values())).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        normalise_noise(noise)
        if on_step is not None:
            on_step(step + 1)
    with torch.no_grad():
        x = synthesis.synthesize(w, noise or None)
        final = torch.stack(list(loss_fn.terms(x, noise).values())).sum(0)
        quality = psnr(x, loss_fn.target)
    return Projection(w.detach().float().cpu(), [n.detach().float().cpu() for n in noise], final.float().cpu(),
                      quality.float().cpu())
