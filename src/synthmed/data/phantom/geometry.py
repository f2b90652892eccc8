"""The phantom grid: BraTS's fixed field of view, the grid's spacing and affine, and voxel-to-world maps."""

from __future__ import annotations

import numpy as np

from synthmed.errors import SynthmedError

#: Grid ``(D, H, W)``; the NIfTI files are 240 × 240 × 155 ``(x, y, z)`` like BraTS.
DEFAULT_SHAPE: tuple[int, int, int] = (155, 240, 240)

#: Field of view in mm, ``(x, y, z)`` = ``(W, H, D)``, whatever the shape.
FIELD_OF_VIEW_MM: tuple[float, float, float] = (240.0, 240.0, 155.0)
#: World ``(x, y, z)`` mm of the field of view's lower corner (the grid's outer edge, not a voxel centre).
FOV_LOW_MM = np.array([-120.0, -137.0, -68.0])


def phantom_geometry(shape: tuple[int, int, int] = DEFAULT_SHAPE) -> tuple[tuple[float, float, float], np.ndarray]:
    """Spacing and affine of the phantom grid of ``shape`` ``(D, H, W)``.

    Returns:
        ``(spacing, affine)``: spacing in mm, ``(D, H, W)`` order (``155/D, 240/H, 240/W``);
        affine the 4 × 4 RAS+ voxel ``(x, y, z)`` → mm matrix (voxel centres).
    """
    _check_shape(shape)
    d, h, w = shape
    step = np.array(FIELD_OF_VIEW_MM) / np.array([w, h, d], dtype=np.float64)
    affine = np.eye(4)
    affine[:3, :3] = np.diag(step)
    affine[:3, 3] = FOV_LOW_MM + 0.5 * step
    return (float(step[2]), float(step[1]), float(step[0])), affine


def _check_shape(shape: tuple[int, ...]) -> None:
    if len(shape) != 3 or min(int(n) for n in shape) < 16:
        raise SynthmedError(f"phantom shape must be three sides (D, H, W) of at least 16 voxels, got {tuple(shape)}")


def world_lines(affine: np.ndarray, box: tuple[slice, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World coordinates (mm) of the voxel centres of ``box`` along z, y and x."""
    z, y, x = (np.arange(sl.start, sl.stop, dtype=np.float64) for sl in box)
    return affine[2, 3] + affine[2, 2] * z, affine[1, 3] + affine[1, 1] * y, affine[0, 3] + affine[0, 0] * x


def apply_affine(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4 × 4 affine to points ``[..., 3]``.

    Written with ``einsum`` rather than ``@``: numpy's OpenBLAS would start threads that
    busy-wait after the call and slow down torch's threads on a small machine (and in pool
    workers).
    """
    return np.einsum("ij,...j->...i", affine[:3, :3], np.asarray(points, dtype=np.float64)) + affine[:3, 3]
