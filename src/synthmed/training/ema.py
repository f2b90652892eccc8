"""Exponential moving average of a network's weights."""

from __future__ import annotations

import copy

import torch

from synthmed.training.checkpoint import _unwrap


class EMA(torch.nn.Module):
    """A frozen copy of ``model`` whose weights track ``model``'s.

    After each optimiser step call :meth:`update`: ``ema ← d·ema + (1 - d)·model`` with
    ``d = min(decay, (1 + n) / (10 + n))`` (a warm-up so early averages are not dominated by
    the random initialisation), ``n`` the number of updates so far. Buffers (e.g. norm
    statistics) are copied. :attr:`module` is an ordinary network for sampling and is saved
    in checkpoints like any module.

    Args:
        model: the network to average (Fabric/DDP wrappers are looked through).
        decay: the long-run decay, e.g. 0.999.
    """

    def __init__(self, model: torch.nn.Module, decay: float = 0.999):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.module = copy.deepcopy(_unwrap(model)).eval().requires_grad_(False)
        self.decay = float(decay)
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))

    def current_decay(self) -> float:
        n = int(self.updates)
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Move the average towards ``model``'s current weights."""
        d = self.current_decay()
        src = _unwrap(model)
        for ema_p, p in zip(self.module.parameters(), src.parameters()):
            ema_p.lerp_(p.detach().to(ema_p.dtype), 1.0 - d)
        for ema_b, b in zip(self.module.buffers(), src.buffers()):
            ema_b.copy_(b)
        self.updates += 1

    def forward(self, *args, **kwargs):  # noqa: ANN002, ANN003
        return self.module(*args, **kwargs)
