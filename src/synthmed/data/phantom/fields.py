"""Smooth fields: separable cubic B-splines, evaluated on grids, and smooth random noise built from them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def bspline_weights(positions: np.ndarray, count: int, low: float, length: float) -> np.ndarray:
    """Cubic B-spline weights ``[len(positions), count]`` for controls spanning ``low .. low + length``.

    Control ``j`` sits at ``low + (j - 1) * step``, ``step = length / (count - 3)``. Inside the
    span each row is non-negative and sums to 1 (a field never exceeds its controls) and
    linear functions are reproduced exactly.
    """
    step = length / (count - 3)
    u = np.abs((np.asarray(positions, dtype=np.float64)[:, None] - low) / step + 1.0 - np.arange(count)[None, :])
    return np.where(u < 1.0, 2.0 / 3.0 - u**2 + 0.5 * u**3, np.where(u < 2.0, (2.0 - u) ** 3 / 6.0, 0.0))


def control_positions(count: int, low: float, length: float) -> np.ndarray:
    """Positions (mm) of the controls of :func:`bspline_weights`."""
    return low + (np.arange(count) - 1.0) * length / (count - 3)


def spline_field(controls: np.ndarray, lines: tuple[np.ndarray, np.ndarray, np.ndarray], low: np.ndarray,
                 length: np.ndarray) -> torch.Tensor:
    """Evaluate a separable cubic B-spline field on the grid spanned by ``lines``.

    Args:
        controls: ``[C, nz, ny, nx]`` control values.
        lines: world coordinates (mm) of the grid along z, y and x.
        low, length: ``(x, y, z)`` lower corner and size (mm) of the controls' span.

    Returns:
        float32 ``[len(z), len(y), len(x), C]``, channels last (as ``grid_sample`` wants).
    """
    wz, wy, wx = (
        torch.from_numpy(bspline_weights(p, n, lo, ln).astype(np.float32))
        for p, n, lo, ln in zip(lines, controls.shape[1:], low[::-1], length[::-1])
    )
    c = torch.from_numpy(np.ascontiguousarray(controls.transpose(1, 2, 3, 0)).astype(np.float32))  # [a, b, c, k]
    t = torch.einsum("abck,xc->abxk", c, wx)
    t = torch.einsum("abxk,yb->ayxk", t, wy).contiguous()
    out = torch.zeros((len(lines[0]), *t.shape[1:]), dtype=torch.float32)
    for a in range(t.shape[0]):  # at most 4 non-zero weights per row: a short, fixed-order sum
        rows = torch.nonzero(wz[:, a]).flatten()
        if len(rows):
            r0, r1 = int(rows[0]), int(rows[-1]) + 1  # the support of a control is an interval
            out[r0:r1].addcmul_(wz[r0:r1, a].view(-1, 1, 1, 1), t[a])
    return out


def noise_fields(rng: np.random.Generator, lines: tuple[np.ndarray, np.ndarray, np.ndarray], count: int,
                 cell_mm: float) -> np.ndarray:
    """``count`` smooth random fields, float32 ``[count, len(z), len(y), len(x)]``.

    Cubic B-splines with i.i.d. Gaussian controls every ``cell_mm`` over the box ``lines``
    (world mm): features of about ``cell_mm``, sd ≈ 0.9, softly limited to ±2 (``2 tanh(v / 2)``).
    Evaluated on a lattice of ``max(cell_mm / 4, 2)`` mm and interpolated trilinearly.
    """
    low = np.array([lines[2][0], lines[1][0], lines[0][0]])
    length = np.array([max(lines[k][-1] - lines[k][0], 1e-3) for k in (2, 1, 0)])
    counts = [int(math.ceil(length[k] / cell_mm)) + 3 for k in (2, 1, 0)]
    controls = rng.standard_normal((count, *counts)) / 0.332  # sd of the 3D cubic B-spline of unit controls
    sizes = [len(line) for line in lines]
    coarse = tuple(
        np.linspace(line[0], line[-1], max(2, min(len(line), int(math.ceil((line[-1] - line[0]) / step)) + 1)))
        for line, step in zip(lines, [max(cell_mm / 4.0, 2.0)] * 3)
    )
    field = spline_field(controls, coarse, low, length).permute(3, 0, 1, 2)  # type: ignore[arg-type]
    field = (2.0 * torch.tanh(0.5 * field))[None].contiguous()
    return F.interpolate(field, size=sizes, mode="trilinear", align_corners=True)[0].numpy()


@dataclass(frozen=True)
class NoiseLattice:
    """Smooth random fields fixed in their own frame, to be evaluated at any points of it.

    Unlike :func:`noise_fields` (controls laid over the box it is evaluated on), the controls
    here are laid once over a fixed box, so evaluating the fields at ``x / s`` draws the same
    pattern scaled by ``s`` — the growing tumour's shape (:mod:`.longitudinal`).

    Attributes:
        controls: float64 ``[count, nz, ny, nx]`` B-spline controls, i.i.d. Gaussian scaled to
            sd ≈ 0.9 of the evaluated field (as :func:`noise_fields`).
        low, length: ``(x, y, z)`` lower corner and size (mm) of the controls' span.
    """

    controls: np.ndarray
    low: np.ndarray
    length: np.ndarray

    def at(self, lines: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        """The fields on the grid spanned by ``lines`` (z, y, x mm): float32 ``[count, len(z), len(y), len(x)]``.

        Softly limited to ±2 (``2 tanh(v / 2)``), exactly as :func:`noise_fields`; outside the
        span the controls fade and the fields go to 0.
        """
        field = spline_field(self.controls, lines, self.low, self.length)
        return (2.0 * torch.tanh(0.5 * field)).permute(3, 0, 1, 2).contiguous().numpy()


def noise_lattice(rng: np.random.Generator, reach_mm: float, count: int, cell_mm: float) -> NoiseLattice:
    """``count`` smooth random fields with features of about ``cell_mm`` on the cube ``[-reach_mm, reach_mm]³``."""
    side = 2.0 * max(float(reach_mm), 1e-3)
    n = int(math.ceil(side / cell_mm)) + 3
    controls = rng.standard_normal((count, n, n, n)) / 0.332  # sd of the 3D cubic B-spline of unit controls
    return NoiseLattice(controls=controls, low=np.full(3, -side / 2.0), length=np.full(3, side))
