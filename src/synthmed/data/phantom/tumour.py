"""The tumour: necrosis, enhancing rim and edema drawn as nested lobulated regions, with their texture."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from synthmed.data.phantom.draws import TumourSpec
from synthmed.data.phantom.fields import noise_fields


@dataclass
class TumourBox:
    """The tumour drawn on its bounding box ``box`` (slices into the crop)."""

    box: tuple[slice, ...]
    labels: np.ndarray  # uint8 canonical labels on the box
    modulation: np.ndarray  # float32 [3, ...] intensity texture of NCR, ED (signal strength 0-1), ET


# Bounds on the level-set noise: a label's region never reaches past this many radii.
_CORE_BOUND = 1.0 + 0.18 * 2.0 + 0.05 * 2.0
_WHOLE_BOUND = 1.0 + 0.22 * 2.0 + 0.07 * 2.0 + 0.5 * 0.5


def _box_around(centre: np.ndarray, reach_mm: float, spacing_zyx: np.ndarray, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """Slices of the voxels within ``reach_mm`` (per axis) of ``centre`` (voxel indices), clipped to ``shape``."""
    first = np.clip(np.floor(centre - reach_mm / spacing_zyx).astype(int), 0, np.array(shape) - 1)
    last = np.clip(np.ceil(centre + reach_mm / spacing_zyx).astype(int) + 1, first + 1, np.array(shape))
    return tuple(slice(int(a), int(b)) for a, b in zip(first, last))


def _ellipsoid_radius(rel: list[np.ndarray], frame: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``|frame @ (x - offset)|`` float32 on the grid of offsets ``rel`` (z, y, x mm from the centre).

    Evaluated as a quadratic form, so only two full-size operations and a square root.
    """
    q = (frame.T @ frame).astype(np.float32)
    z, y, x = (np.asarray(r - o, dtype=np.float32) for r, o in zip(rel, offset[::-1]))
    plane = q[0, 0] * x[None, :] ** 2 + 2 * q[0, 1] * x[None, :] * y[:, None] + q[1, 1] * y[:, None] ** 2
    slope = 2 * q[0, 2] * x[None, :] + 2 * q[1, 2] * y[:, None]
    r2 = plane[None] + z[:, None, None] * slope[None] + (q[2, 2] * z**2)[:, None, None]
    return np.sqrt(np.maximum(r2, 0.0, out=r2), out=r2)


def draw_tumour_labels(spec: TumourSpec, centre_vox: np.ndarray, spacing_zyx: np.ndarray, gm: np.ndarray,
                       wm: np.ndarray, mask: np.ndarray) -> TumourBox:
    """Draw the tumour's labels and texture around ``centre_vox``.

    Args:
        centre_vox: tumour centre in (fractional) voxel indices ``(z, y, x)`` of the arrays.
        spacing_zyx: voxel size in mm.
        gm, wm, mask: ``[d, h, w]`` warped GM, WM and brain-mask maps.

    Returns:
        The labels on the whole tumour's bounding box (plus two voxels).
    """
    rng = np.random.default_rng(spec.seed)
    box = tumour_box(spec, centre_vox, spacing_zyx, mask.shape)
    rel = box_offsets(box, centre_vox, spacing_zyx)
    lobes = noise_fields(rng, tuple(rel), 3, cell_mm=lobe_cell_mm(spec))  # type: ignore[arg-type]
    rough = noise_fields(rng, tuple(rel), 3, cell_mm=ROUGH_CELL_MM)  # type: ignore[arg-type]
    labels, modulation = tumour_on_box(spec, box, rel, centre_vox, lobes, rough, spacing_zyx, gm, wm, mask)
    return tighten(box, labels, modulation)


#: Feature size (mm) of the tumour's fine roughness noise.
ROUGH_CELL_MM = 5.0


def lobe_cell_mm(spec: TumourSpec) -> float:
    """Feature size (mm) of the tumour's lobulation noise."""
    return max(0.6 * spec.r_core, 6.0)


def whole_reach_mm(spec: TumourSpec) -> float:
    """Distance (mm) from the centre beyond which no tumour label can lie, whatever the noise."""
    return spec.r_whole * _WHOLE_BOUND * spec.max_stretch


def tumour_box(spec: TumourSpec, centre_vox: np.ndarray, spacing_zyx: np.ndarray,
               shape: tuple[int, ...]) -> tuple[slice, ...]:
    """Slices of the arrays ``shape`` that can hold the tumour of ``spec`` around ``centre_vox`` (two voxels to spare)."""
    return _box_around(centre_vox, whole_reach_mm(spec) + 2.0 * spacing_zyx.max(), spacing_zyx, shape)


def box_offsets(box: tuple[slice, ...], centre_vox: np.ndarray, spacing_zyx: np.ndarray) -> list[np.ndarray]:
    """Offsets (mm) of the voxels of ``box`` from ``centre_vox`` along z, y and x."""
    return [(np.arange(sl.start, sl.stop) - c) * s for sl, c, s in zip(box, centre_vox, spacing_zyx)]


def tumour_on_box(spec: TumourSpec, box: tuple[slice, ...], rel: list[np.ndarray], centre_vox: np.ndarray,
                  lobes: np.ndarray, rough: np.ndarray, spacing_zyx: np.ndarray, gm: np.ndarray, wm: np.ndarray,
                  mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The tumour's labels and texture on ``box``, from its level-set noise.

    Args:
        box: slices of the arrays (see :func:`tumour_box`); ``rel`` its :func:`box_offsets`.
        lobes, rough: float32 ``[3, *box shape]`` noise fields (lobulation, roughness) on the box.

    Returns:
        ``(labels, modulation)``: uint8 canonical labels and float32 ``[3, ...]`` texture of
        NCR, ED (signal strength 0-1) and ET, on the box.
    """
    cross = ndimage.generate_binary_structure(3, 1)
    grow = max(1, int(round(2.0 / spacing_zyx.min())))  # edema at least ~2 mm around the core
    rho = _ellipsoid_radius(rel, spec.frame, np.zeros(3))
    brain_b = mask[box] > 0.5
    wm_b = wm[box]
    csf_b = np.clip(mask[box] - gm[box] - wm_b, 0.0, 1.0)
    centre_idx = tuple(int(np.clip(round(c) - sl.start, 0, sl.stop - sl.start - 1)) for c, sl in zip(centre_vox, box))
    if not brain_b[centre_idx]:  # only on very coarse grids: start from the nearest brain voxel
        candidates = np.argwhere(brain_b)
        distance = (((candidates - np.array(centre_idx)) * spacing_zyx) ** 2).sum(axis=1)
        centre_idx = tuple(int(v) for v in candidates[int(np.argmin(distance))])

    # Core and necrosis on a sub-box that holds the core and its dilation.
    sub = _box_around(np.array(centre_idx, dtype=np.float64),
                      spec.r_core * _CORE_BOUND * spec.max_stretch + (grow + 3) * spacing_zyx.max(),
                      spacing_zyx, rho.shape)
    sub_centre = tuple(c - sl.start for c, sl in zip(centre_idx, sub))
    brain_s = brain_b[sub]
    core = (rho[sub] / spec.r_core + 0.18 * lobes[0][sub] + 0.05 * rough[0][sub] < 1.0) & brain_s
    seed = np.zeros(core.shape, dtype=bool)
    seed[sub_centre] = True
    core |= ndimage.binary_dilation(seed, cross, iterations=2, mask=brain_s)  # never an empty core
    pieces, _ = ndimage.label(core)
    core = pieces == pieces[sub_centre]
    inner = ndimage.binary_erosion(core, cross)
    for _ in range(3):  # coarse grids: grow a core too thin to hold a necrotic voxel
        if inner.any():
            break
        core = ndimage.binary_dilation(core, cross, mask=brain_s)
        inner = ndimage.binary_erosion(core, cross)
    sub_rel = [r[sl] for r, sl in zip(rel, sub)]
    necrosis_field = (_ellipsoid_radius(sub_rel, spec.frame, spec.necrosis_offset) / spec.r_necrosis
                      + 0.2 * lobes[1][sub] - 0.06 * rough[0][sub])
    necrosis = inner & (necrosis_field < 1.0)
    if not necrosis.any() and inner.any():
        necrosis.flat[int(np.argmin(np.where(inner, necrosis_field, np.inf)))] = True
    elif not necrosis.any():  # a brain too thin for a wrapped core (grids of ~15 mm voxels)
        necrosis[sub_centre] = True
    ring = ndimage.binary_dilation(core, cross, iterations=grow) & brain_s

    edema_field = rho / spec.r_whole + 0.22 * lobes[2] + 0.07 * rough[1] - 0.5 * (wm_b - 0.5)
    tumour = (edema_field < 1.0) & brain_b & (csf_b < 0.5)
    tumour[sub] |= ring | core
    pieces, _ = ndimage.label(tumour)
    whole = pieces == pieces[centre_idx]

    labels = whole.astype(np.uint8) * 2
    labels[sub][core] = 3
    labels[sub][necrosis] = 1
    modulation = np.stack([
        1.0 + 0.12 * rough[2],  # necrosis: heterogeneous
        np.clip(1.2 - 0.5 * edema_field + 0.1 * rough[2], 0.45, 1.0),  # edema: strongest near the core
        1.0 + 0.12 * lobes[1],  # enhancing rim: patchy enhancement
    ]).astype(np.float32)
    return labels, modulation


def tighten(box: tuple[slice, ...], labels: np.ndarray, modulation: np.ndarray) -> TumourBox:
    """The tumour on ``box`` shrunk to its bounding box plus two voxels (room for partial-volume smoothing).

    ``labels`` must hold a tumour voxel.
    """
    whole = labels > 0
    tight = []
    for axis in range(3):
        present = np.nonzero(whole.any(axis=tuple(a for a in range(3) if a != axis)))[0]
        tight.append(slice(max(int(present[0]) - 2, 0), min(int(present[-1]) + 3, whole.shape[axis])))
    tight_box = tuple(slice(sl.start + t.start, sl.start + t.stop) for sl, t in zip(box, tight))
    return TumourBox(box=tight_box, labels=labels[tuple(tight)], modulation=modulation[(slice(None), *tight)])
