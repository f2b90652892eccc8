"""Exponential moving average of a network's weights, and the half-life convention of GANs."""

from __future__ import annotations

import copy

import torch

from synthmed.training.fabric import unwrap


def half_life_decay(batch: int, images_seen: int, half_life_kimg: float, rampup: float | None = None) -> float:
    """Per-step decay ``β`` of an average whose half-life is ``half_life_kimg`` thousand images
    (the NVlabs StyleGAN convention).

    ``β = 0.5 ** (batch / max(h, 1e-8))`` with ``h = 1000·half_life_kimg`` images or, with a
    ``rampup``, ``h = min(1000·half_life_kimg, rampup·images_seen)``: early in training the
    half-life is a fixed share of the images seen so far, so the average forgets the random
    initialisation (``β = 0`` at the first step: a copy). The half-life, unlike a fixed
    per-step decay, does not depend on the batch size.

    Args:
        batch: images per optimiser step (all processes together).
        images_seen: images trained on before this step.
        half_life_kimg: the half-life in thousands of images (NVlabs: 10 at batch 32).
        rampup: the ramp-up share (NVlabs: 0.05) or ``None`` for none.
    """
    h = half_life_kimg * 1000.0
    if rampup is not None:
        h = min(h, rampup * images_seen)
    return 0.5 ** (batch / max(h, 1e-8))


class EMA(torch.nn.Module):
    """A frozen copy of ``model`` whose weights track ``model``'s.

    After each optimiser step call :meth:`update`: ``ema ← d·ema + (1 - d)·model`` with
    ``d = min(decay, (1 + n) / (10 + n))`` (a warm-up so early averages are not dominated by
    the random initialisation), ``n`` the number of updates so far, or the ``decay`` passed
    to :meth:`update` (e.g. :func:`half_life_decay`'s). Buffers (e.g. norm statistics,
    running means) are copied. :attr:`module` is an ordinary network for sampling and is saved
    in checkpoints like any module.

    Args:
        model: the network to average (Fabric/DDP wrappers are looked through).
        decay: the long-run decay, e.g. 0.999.
    """

    def __init__(self, model: torch.nn.Module, decay: float = 0.999):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.module = copy.deepcopy(unwrap(model)).eval().requires_grad_(False)
        self.decay = float(decay)
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))

    def current_decay(self) -> float:
        n = int(self.updates)
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: torch.nn.Module, decay: float | None = None) -> None:
        """Move the average towards ``model``'s current weights with ``decay`` (default:
        :meth:`current_decay`)."""
        d = self.current_decay() if decay is None else float(decay)
        if not 0.0 <= d <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {d}")
        src = unwrap(model)
        for ema_p, p in zip(self.module.parameters(), src.parameters()):
            ema_p.lerp_(p.detach().to(ema_p.dtype), 1.0 - d)
        for ema_b, b in zip(self.module.buffers(), src.buffers()):
            ema_b.copy_(b)
        self.updates += 1

    def forward(self, *args, **kwargs):  # noqa: ANN002, ANN003
        return self.module(*args, **kwargs)
