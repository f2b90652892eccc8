"""The warp: affine, smooth displacement and mass effect composed into one pull-back of the template."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from synthmed.data.phantom.draws import Anatomy
from synthmed.data.phantom.fields import bspline_weights, control_positions, spline_field
from synthmed.data.phantom.geometry import FIELD_OF_VIEW_MM, FOV_LOW_MM, apply_affine, world_lines
from synthmed.data.phantom.template import mni_template, template_maps

_BRAIN_CENTRE_MNI = np.array([0.0, -17.0, 5.0])  # centre of the MNI brain mask's box, mm


def crop_box(anatomy: Anatomy, affine: np.ndarray, shape: tuple[int, int, int],
             margin_mm: float) -> tuple[slice, slice, slice]:
    """Slices ``(D, H, W)`` of the grid that can hold the warped brain (``margin_mm`` to spare)."""
    push = np.linalg.inv(anatomy.pull)
    surface = mni_template().surface_mm
    world = _BRAIN_CENTRE_MNI + anatomy.shift + np.einsum("ij,kj->ki", push, surface - _BRAIN_CENTRE_MNI)
    margin = margin_mm * np.abs(push).sum(axis=1).max()
    vox = apply_affine(np.linalg.inv(affine), np.stack([world.min(0) - margin, world.max(0) + margin]))
    first = np.clip(np.floor(vox.min(0)).astype(int), 0, None)
    last = np.minimum(np.ceil(vox.max(0)).astype(int) + 1, np.array(shape[::-1]))
    return tuple(slice(int(a), int(b)) for a, b in zip(first[::-1], last[::-1]))  # type: ignore[return-value]


def _inflate(r: torch.Tensor, radius: float) -> torch.Tensor:
    """Volume-preserving radial inflation: source radius ``s(r)`` of a point at radius ``r``.

    ``s³ = r³ − R³ (1 − exp(−r³/R³))``: far away ``s³ ≈ r³ − R³`` (a ball of radius ``R``
    inserted, tissue pushed outward); smooth and monotone near the centre, ``s(0) = 0``.
    """
    cube = radius**3
    r3 = r**3
    return (r3 - cube * (1.0 - torch.exp(-r3 / cube))).clamp_min(0.0) ** (1.0 / 3.0)


def warp_template(anatomy: Anatomy, affine: np.ndarray, box: tuple[slice, ...],
                  mass: tuple[np.ndarray, float] | None) -> torch.Tensor:
    """Warp the template maps onto ``box`` of the phantom grid.

    Args:
        affine: the phantom grid's affine.
        mass: ``(centre, radius)`` (world mm) of the mass effect, or None.

    Returns:
        float32 ``[3, d, h, w]`` — GM, WM, brain mask on the box.
    """
    spacing = np.abs(np.diag(affine)[:3])  # x, y, z
    maps, maps_affine = template_maps(tuple(max(1, int(s)) for s in spacing[::-1]))  # type: ignore[arg-type]
    lines = world_lines(affine, box)

    # MNI mm → grid_sample's normalised coordinates (align_corners=True): norm = G @ mni + g.
    sizes = np.array(maps.shape[2:][::-1], dtype=np.float64)  # x, y, z
    to_norm = np.diag(np.append(2.0 / (sizes - 1.0), 1.0))
    to_norm[:3, 3] = -1.0
    to_norm = to_norm @ np.linalg.inv(maps_affine)
    g_lin, g_off = to_norm[:3, :3], to_norm[:3, 3]
    # The linear part of the pull-back, written as B-spline controls (which reproduce linear
    # functions exactly), plus the displacement: one separable evaluation gives the grid.
    low, length = FOV_LOW_MM, np.array(FIELD_OF_VIEW_MM)
    counts = anatomy.controls.shape[1:]
    pos = np.stack(np.meshgrid(*[control_positions(n, lo, ln) for n, lo, ln in zip(counts, low[::-1], length[::-1])],
                               indexing="ij")[::-1], axis=-1)  # [nz, ny, nx, (x, y, z)]
    linear = _BRAIN_CENTRE_MNI + np.einsum("ij,zyxj->zyxi", anatomy.pull, pos - _BRAIN_CENTRE_MNI - anatomy.shift)
    controls = np.einsum("ij,zyxj->izyx", g_lin, linear) + g_off[:, None, None, None]
    controls += np.einsum("ij,jzyx->izyx", g_lin, anatomy.controls)
    grid = spline_field(controls, lines, low, length)

    if mass is not None:
        _add_mass_effect(grid, mass, lines, g_lin @ anatomy.pull)
    warped = F.grid_sample(maps, grid[None], mode="bilinear", padding_mode="zeros", align_corners=True)[0]
    return warped.contiguous()


def _add_mass_effect(grid: torch.Tensor, mass: tuple[np.ndarray, float], lines: tuple[np.ndarray, ...],
                     to_norm: np.ndarray) -> None:
    """Add the tumour's mass effect to the sampling ``grid`` ``[d, h, w, 3]`` in place.

    A point at distance ``r`` from the centre samples the anatomy at distance
    :func:`_inflate` ``(r)`` along the same ray (tissue pushed outward), tapered smoothly to
    nothing between 2 and 3.5 radii. Computed on a 2 mm lattice and interpolated
    trilinearly (the field is smooth), only on the box it touches.

    Args:
        to_norm: ``[3, 3]`` world displacement (mm) → normalised grid units.
    """
    centre, radius = mass
    reach = 3.5 * radius
    idx, coarse = [], []
    for axis, line in zip((2, 1, 0), lines):
        inside = np.nonzero(np.abs(line - centre[axis]) <= reach)[0]
        if len(inside) == 0:
            return
        idx.append(slice(int(inside[0]), int(inside[-1]) + 1))
        lo, hi = line[inside[0]], line[inside[-1]]
        n = max(2, min(len(inside), int(math.ceil((hi - lo) / 2.0)) + 1))
        coarse.append(torch.from_numpy(np.linspace(lo, hi, n) - centre[axis]).float())
    z, y, x = coarse
    rel = torch.stack(torch.broadcast_tensors(x[None, None, :], y[None, :, None], z[:, None, None]), dim=-1)
    r = rel.norm(dim=-1).clamp_min(1e-6)
    taper = ((reach - r) / (1.5 * radius)).clamp(0.0, 1.0)
    taper = taper * taper * (3.0 - 2.0 * taper)  # smoothstep
    push = rel * ((1.0 - _inflate(r, radius) / r) * taper).unsqueeze(-1)  # world mm, [z, y, x, (x, y, z)]
    m = to_norm.astype(np.float32)
    shift = torch.stack([  # explicit 3-term sums (no BLAS): identical whatever the thread count
        float(m[k, 0]) * push[..., 0] + float(m[k, 1]) * push[..., 1] + float(m[k, 2]) * push[..., 2] for k in range(3)
    ])
    size = tuple(sl.stop - sl.start for sl in idx)
    fine = F.interpolate(shift[None], size=size, mode="trilinear", align_corners=True)[0]
    grid[idx[0], idx[1], idx[2]] -= fine.permute(1, 2, 3, 0)


def tumour_centre(anatomy: Anatomy, site_mm: np.ndarray) -> np.ndarray:
    """World point (mm) that the warp maps onto MNI ``site_mm`` (fixed-point inversion)."""
    push = np.linalg.inv(anatomy.pull)
    low, length = FOV_LOW_MM, np.array(FIELD_OF_VIEW_MM)
    x = _BRAIN_CENTRE_MNI + anatomy.shift + push @ (site_mm - _BRAIN_CENTRE_MNI)
    for _ in range(8):
        w = [bspline_weights(np.array([p]), n, lo, ln)[0]
             for p, n, lo, ln in zip(x[::-1], anatomy.controls.shape[1:], low[::-1], length[::-1])]
        displacement = np.einsum("kabc,a,b,c->k", anatomy.controls, *w)
        x = _BRAIN_CENTRE_MNI + anatomy.shift + push @ (site_mm - _BRAIN_CENTRE_MNI - displacement)
    return x
