"""GAN losses and regularisers. ``d_*`` are discriminator logits ``[B, 1]`` (or ``[B]``)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F


def logistic_d(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating logistic loss of D: ``softplus(D(fake)) + softplus(-D(real))``, mean."""
    return (F.softplus(d_fake) + F.softplus(-d_real)).mean()


def logistic_g(d_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating logistic loss of G: ``softplus(-D(fake))``, mean."""
    return F.softplus(-d_fake).mean()


def wgan_d(d_real: torch.Tensor, d_fake: torch.Tensor, drift: float = 1e-3) -> torch.Tensor:
    """Wasserstein critic loss with ProGAN's drift term ``drift · D(real)²``, mean."""
    return (d_fake - d_real + drift * d_real.square()).mean()


def wgan_g(d_fake: torch.Tensor) -> torch.Tensor:
    """Wasserstein generator loss ``-D(fake)``, mean."""
    return -d_fake.mean()


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     eps: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: ``(||∇D(x̂)||₂ - 1)²`` at ``x̂ = real + eps·(fake - real)``, ``eps`` ``[B, 1, 1, 1]``; ``[B]``."""
    mixed = (real + eps * (fake.detach() - real)).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).square()


def r1_penalty(d_real: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): ``||∇ₓ D(x)||²`` per real sample, ``[B]``.

    ``real`` must have ``requires_grad`` and ``d_real = D(real)``; the graph is kept
    (``create_graph``) so the penalty can be back-propagated into D.
    """
    (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
    return grad.square().flatten(1).sum(dim=1)


def path_length(fake: torch.Tensor, ws: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Path lengths ``||Jᵀ y||₂`` of StyleGAN 2's regulariser, ``[B]``.

    ``y = noise / sqrt(H·W)`` (``noise`` standard normal like ``fake``); ``ws`` ``[B, L, D]``
    the styles ``fake`` was made from. The penalty is ``(length - running mean)²``.
    """
    h, w = fake.shape[-2:]
    (grad,) = torch.autograd.grad((fake * noise / math.sqrt(h * w)).sum(), ws, create_graph=True)
    return grad.square().sum(dim=2).mean(dim=1).sqrt()
