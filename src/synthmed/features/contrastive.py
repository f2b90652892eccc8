"""The domain encoder's contrastive objective: random views of a batch and the SimCLR NT-Xent loss.

A view flips, crops (scale 0.6–1, shifted), applies a per-channel gain and offset and adds
noise, all from uniforms and normals given by the caller (the training loop's seeded
:class:`~synthmed.training.StepRandom`), so a view is a pure function of its inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def augment(x: torch.Tensor, u: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """One random view of ``x`` ``[B, C, H, W]``; ``u`` ``[B, 6 + 2C]`` uniforms, ``noise`` like ``x``."""
    b, c = x.shape[:2]
    scale = 0.6 + 0.4 * u[:, 0]
    flip_x = torch.where(u[:, 1] < 0.5, -1.0, 1.0)
    flip_y = torch.where(u[:, 2] < 0.5, -1.0, 1.0)
    tx, ty = (u[:, 3] - 0.5) * 2 * (1 - scale), (u[:, 4] - 0.5) * 2 * (1 - scale)
    theta = torch.zeros(b, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0], theta[:, 1, 1] = scale * flip_x, scale * flip_y
    theta[:, 0, 2], theta[:, 1, 2] = tx, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    v = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    gain = (0.7 + 0.6 * u[:, 6 : 6 + c]).view(b, c, 1, 1)
    shift = (0.2 * u[:, 6 + c : 6 + 2 * c] - 0.1).view(b, c, 1, 1)
    return v * gain + shift + 0.05 * u[:, 5].view(b, 1, 1, 1) * noise


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR NT-Xent loss of two views' projections ``[B, P]`` each."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    n = len(z1)
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)
