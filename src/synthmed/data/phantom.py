"""The built-in BraTS-like phantom: four MR sequences and a tumour mask per case, offline.

Anatomy comes from nilearn's bundled 1 mm MNI152 (ICBM 2009a) template: grey- and
white-matter probability maps and the brain mask (T1 template > 0.2, as
``nilearn.datasets.load_mni152_brain_mask``); CSF is ``clip(mask - GM - WM, 0, 1)``. Each case:

1. **Warp** — a random affine (rotation, per-axis scale, translation), a smooth random
   displacement (cubic B-spline, control points every 30 mm) and the tumour's *mass effect*
   (a volume-preserving radial inflation around its centre), composed into one pull-back
   and applied to the MNI maps by a single trilinear ``grid_sample`` over the box that can
   hold the brain.
2. **Tumour** (optional) — centred on a random deep white-matter site of the cerebrum. A
   randomly rotated, anisotropic, lobulated ellipsoid (radius perturbed by smooth noise at
   two scales) is the tumour core (TC); a smaller, off-centre lobulated ellipsoid inside the
   core's one-voxel erosion is the necrotic core (NCR); the rest of the core is the
   enhancing rim (ET); edema (ED) is a larger lobulated region that spreads preferentially
   along white matter, avoids CSF, stays inside the brain and always surrounds the core
   (at least ~2 mm, at least one voxel) inside the brain. The whole tumour is one connected
   region of about 10–150 cm³ (nominal volume log-uniform in 12–125 cm³, then grown along
   white matter and clipped to brain tissue). A tumour case always has all three labels;
   NCR never touches non-core voxels (6-connectivity). Everything is computed on the
   tumour's bounding box.
3. **Intensities** — partial-volume mixtures of per-tissue means per sequence
   (:data:`TISSUE_MEANS`, jittered per case, with smooth texture inside the tumour and an
   edema signal fading towards its border), times a smooth multiplicative bias field per
   sequence, with Rician noise, rounded to integers. T1: WM > GM > CSF; T1ce: as T1 with a
   very bright enhancing rim and a dark necrotic core; T2: CSF brightest, WM darker than
   GM, edema bright; FLAIR: CSF suppressed (dark), edema bright.

Geometry. The field of view is always BraTS's 240 × 240 × 155 mm ``(x, y, z)``; the grid
has ``shape = (D, H, W)`` voxels, so the spacing is ``(155 / D, 240 / H, 240 / W)`` mm in
``(D, H, W)`` order — exactly 1 mm at :data:`DEFAULT_SHAPE`. Other shapes see the same brain
at a coarser (or finer) resolution, so physical sizes (tumour volumes in cm³) do not change
with the shape; for grids of 2 mm or coarser the MNI maps are first averaged over blocks of
about one voxel (partial volume, no aliasing). The affine is RAS+ and diagonal; world
coordinates are roughly MNI millimetres (the brain is scaled by 0.95: MNI152 brains are
larger than average). The brain fits with a margin in x and y and below the vertex; as in
BraTS, the brainstem leaves through the lowest slice.

Background is exactly 0 outside the warped brain mask and every brain voxel is at least 1
in every channel, so ``(images > 0).any(0)`` is the brain mask. Intensities are integers
in scanner-like units (white matter ≈ 250–1100 depending on sequence and case, enhancing
rim up to ≈ 2500), written as int16.

Randomness. Case ``i`` depends only on ``(seed, i)`` and its ``tumour`` flag:
``numpy.random.SeedSequence(seed, spawn_key=(i,))`` spawns independent streams for the
tumour-free decision, the anatomy, the tumour, the contrasts and the noise (a tumour-free
case has the same anatomy and contrasts as its tumour twin; its noise differs). No global
RNG state is used and torch runs on one thread during a case, so the arrays are identical
whatever the number of workers or cases.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

import synthmed
from synthmed.atomic import atomic_directory
from synthmed.data.case import CANONICAL_CHANNELS, Case
from synthmed.data.layouts.brats import write_brats_case
from synthmed.errors import SynthmedError
from synthmed.parallel import torch_threads

#: Grid ``(D, H, W)``; the NIfTI files are 240 × 240 × 155 ``(x, y, z)`` like BraTS.
DEFAULT_SHAPE: tuple[int, int, int] = (155, 240, 240)

#: Field of view in mm, ``(x, y, z)`` = ``(W, H, D)``, whatever the shape.
FIELD_OF_VIEW_MM: tuple[float, float, float] = (240.0, 240.0, 155.0)
_FOV_LOW_MM = np.array([-120.0, -137.0, -68.0])  # world (x, y, z) of the field of view's corner

#: Tissue classes mixed into every voxel, in this order.
TISSUES: tuple[str, ...] = ("csf", "gm", "wm", "ncr", "ed", "et")

#: Mean intensity of each tissue (columns, :data:`TISSUES` order) per sequence (rows,
#: :data:`CANONICAL_CHANNELS` order), before per-case jitter (±5 % per entry) and scaling
#: (±20 % per sequence).
TISSUE_MEANS: np.ndarray = np.array(
    [
        # csf    gm     wm    ncr    ed     et
        [180.0, 520.0, 760.0, 250.0, 430.0, 560.0],  # t1: WM > GM > CSF; tumour hypointense
        [200.0, 540.0, 740.0, 210.0, 450.0, 1250.0],  # t1ce: enhancing rim very bright, necrosis dark
        [1100.0, 520.0, 330.0, 950.0, 860.0, 640.0],  # t2: CSF brightest, WM < GM, edema bright
        [110.0, 520.0, 400.0, 470.0, 900.0, 680.0],  # flair: CSF suppressed, edema bright
    ],
    dtype=np.float32,
)

#: Case id of case ``index`` (BraTS 2021 naming).
CASE_ID_FORMAT = "BraTS2021_{index:05d}"

_BASE_SCALE = 0.95
_BRAIN_CENTRE_MNI = np.array([0.0, -17.0, 5.0])  # centre of the MNI brain mask's box, mm
_CONTROL_SPACING_MM = 30.0
_MNI_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}


def case_id(index: int) -> str:
    """``BraTS2021_00000``-style id of case ``index``."""
    return CASE_ID_FORMAT.format(index=index)


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
    affine[:3, 3] = _FOV_LOW_MM + 0.5 * step
    return (float(step[2]), float(step[1]), float(step[0])), affine


def _check_shape(shape: tuple[int, ...]) -> None:
    if len(shape) != 3 or min(int(n) for n in shape) < 16:
        raise SynthmedError(f"phantom shape must be three sides (D, H, W) of at least 16 voxels, got {tuple(shape)}")


def _world_lines(affine: np.ndarray, box: tuple[slice, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World coordinates (mm) of the voxel centres of ``box`` along z, y and x."""
    z, y, x = (np.arange(sl.start, sl.stop, dtype=np.float64) for sl in box)
    return affine[2, 3] + affine[2, 2] * z, affine[1, 3] + affine[1, 1] * y, affine[0, 3] + affine[0, 0] * x


def _apply(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4 × 4 affine to points ``[..., 3]``.

    Written with ``einsum`` rather than ``@``: numpy's OpenBLAS would start threads that
    busy-wait after the call and slow down torch's threads on a small machine (and in pool
    workers).
    """
    return np.einsum("ij,...j->...i", affine[:3, :3], np.asarray(points, dtype=np.float64)) + affine[:3, 3]


# ----------------------------------------------------------------------------------------
# Template (cached per process)


@dataclass(frozen=True)
class _Template:
    """The MNI152 maps on their own 1 mm grid.

    Attributes:
        maps: float32 ``[3, Z, Y, X]`` — GM, WM (probabilities) and brain mask (0/1).
        affine: MNI voxel ``(x, y, z)`` → mm.
        surface_mm: ``[K, 3]`` points on the brain mask's surface, world ``(x, y, z)`` mm.
        sites_mm: ``[M, 3]`` candidate tumour centres (deep cerebral white matter), mm.
    """

    maps: torch.Tensor
    affine: np.ndarray
    surface_mm: np.ndarray
    sites_mm: np.ndarray


def _load_mni152() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """GM, WM, brain mask (float32 ``(x, y, z)`` arrays in 0–1) and affine of nilearn's MNI152.

    Reads the 1 mm files bundled in nilearn and applies the same steps as
    ``nilearn.datasets.load_mni152_{gm,wm}_template(resolution=1)`` (scale to a maximum of 1)
    and ``load_mni152_brain_mask(resolution=1)`` (T1 template scaled to 1, > 0.2), without
    importing ``nilearn.datasets`` (which pulls in scikit-learn: seconds per worker process).
    Falls back to those functions if the files are not where this nilearn keeps them.
    """
    spec = importlib.util.find_spec("nilearn")
    roots = [Path(p) / "datasets" / "data" for p in (spec.submodule_search_locations or [])] if spec else []
    paths = {name: next((r / f for r in roots if (r / f).is_file()), None) for name, f in _MNI_FILES.items()}
    if all(paths.values()):
        images = {name: nib.load(path) for name, path in paths.items()}
        arrays = {name: np.asarray(img.get_fdata(dtype=np.float32)) for name, img in images.items()}
        gm, wm, t1 = (arrays[n] / arrays[n].max() for n in ("gm", "wm", "t1"))
        return gm, wm, (t1 > 0.2).astype(np.float32), np.asarray(images["gm"].affine, dtype=np.float64)
    from nilearn import datasets  # pragma: no cover - only for unusual nilearn installs

    gm_img = datasets.load_mni152_gm_template(resolution=1)
    wm_img = datasets.load_mni152_wm_template(resolution=1)
    mask_img = datasets.load_mni152_brain_mask(resolution=1)
    gm, wm, mask = (np.asarray(img.get_fdata(dtype=np.float32)) for img in (gm_img, wm_img, mask_img))
    return gm, wm, mask, np.asarray(gm_img.affine, dtype=np.float64)


@functools.lru_cache(maxsize=1)
def _template() -> _Template:
    """Load the MNI152 maps once per process and derive the surface and tumour sites."""
    gm, wm, mask, affine = _load_mni152()
    gm, wm = np.clip(gm, 0.0, 1.0), np.clip(wm, 0.0, 1.0)
    maps = torch.from_numpy(np.ascontiguousarray(np.stack([gm, wm, mask]).transpose(0, 3, 2, 1)))

    brain = mask > 0.5
    coarse = brain[::2, ::2, ::2]
    surface = coarse & ~ndimage.binary_erosion(coarse)
    surface_mm = _apply(affine, np.argwhere(surface) * 2.0)
    # Tumour sites: white matter at least 15 mm from the brain's edge, in the cerebrum.
    depth = ndimage.distance_transform_edt(coarse) * 2.0
    vox = np.argwhere((wm[::2, ::2, ::2] > 0.6) & (depth > 15.0)) * 2.0
    mm = _apply(affine, vox)
    cerebrum = (mm[:, 2] > -20.0) & ~((mm[:, 1] < -45.0) & (mm[:, 2] < 5.0))
    return _Template(maps=maps, affine=affine, surface_mm=surface_mm, sites_mm=mm[cerebrum])


@functools.lru_cache(maxsize=4)
def _template_maps(factor: tuple[int, int, int]) -> tuple[torch.Tensor, np.ndarray]:
    """The template maps averaged over blocks of ``factor`` ``(z, y, x)`` voxels, and their affine.

    Used when the phantom grid is coarser than the template's 1 mm, so each voxel averages
    the anatomy it covers (partial volume) instead of aliasing it; ``(1, 1, 1)`` is the maps
    unchanged.

    Returns:
        ``(maps, affine)``: float32 ``[1, 3, Z', Y', X']`` in ``channels_last_3d`` memory
        format (faster ``grid_sample`` of several channels; same values) and its voxel
        ``(x, y, z)`` → mm affine.
    """
    template = _template()
    maps = template.maps[None]
    if factor != (1, 1, 1):
        maps = F.avg_pool3d(maps, factor, stride=factor)
    block = np.eye(4)
    block[:3, :3] = np.diag(np.array(factor[::-1], dtype=np.float64))
    block[:3, 3] = (np.array(factor[::-1]) - 1.0) / 2.0  # a block's centre in template voxels
    return maps.contiguous(memory_format=torch.channels_last_3d), template.affine @ block


# ----------------------------------------------------------------------------------------
# Random parameters


def _rotation(angles_degrees: np.ndarray) -> np.ndarray:
    """Rotation matrix ``Rz @ Ry @ Rx`` from angles about x, y and z in degrees."""
    ax, ay, az = np.deg2rad(angles_degrees)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3D rotation matrix (normalised Gaussian quaternion)."""
    w, x, y, z = rng.standard_normal(4)
    n = math.sqrt(w * w + x * x + y * y + z * z) or 1.0
    w, x, y, z = w / n, x / n, y / n, z / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _control_counts() -> tuple[int, int, int]:
    """B-spline control points ``(z, y, x)`` covering the field of view every ~30 mm."""
    return tuple(int(round(f / _CONTROL_SPACING_MM)) + 3 for f in FIELD_OF_VIEW_MM[::-1])  # type: ignore[return-value]


@dataclass(frozen=True)
class _Anatomy:
    """The warp: MNI point ``= c + pull @ (x - c - shift) + displacement(x)`` (mm, c the brain centre)."""

    pull: np.ndarray  # [3, 3] subject → MNI linear part
    shift: np.ndarray  # [3] mm
    controls: np.ndarray  # [3, nz, ny, nx] B-spline controls of the displacement (x, y, z parts), mm


def _draw_anatomy(rng: np.random.Generator) -> _Anatomy:
    size = math.exp(rng.normal(0.0, 0.03))
    scales = size * rng.uniform(0.95, 1.05, 3)
    scales[2] = min(scales[2], 1.03)  # keep the vertex inside the 155 mm field of view
    forward = _BASE_SCALE * _rotation(rng.uniform(-1.0, 1.0, 3) * np.array([6.0, 4.0, 6.0])) @ np.diag(scales)
    shift = rng.uniform(-1.0, 1.0, 3) * np.array([4.0, 4.0, 2.0])
    sigma = rng.uniform(1.5, 3.0)
    controls = np.clip(rng.standard_normal((3, *_control_counts())), -3.0, 3.0) * sigma
    return _Anatomy(pull=np.linalg.inv(forward), shift=shift, controls=controls)


@dataclass(frozen=True)
class _TumourSpec:
    """Tumour shape (mm, world axes)."""

    site_mm: np.ndarray  # [3] MNI point of the centre
    r_whole: float  # equivalent-sphere radius of the whole tumour before clipping to the brain
    r_core: float
    r_necrosis: float
    necrosis_offset: np.ndarray  # [3] centre of the necrosis relative to the tumour's, mm
    r_mass: float  # radius of the ball the mass effect inserts
    frame: np.ndarray  # [3, 3] world → tumour frame (rotation and volume-preserving stretch)
    max_stretch: float  # longest semi-axis / equivalent radius
    seed: int  # stream of the shape and texture noise


def _draw_tumour(rng: np.random.Generator, sites_mm: np.ndarray) -> _TumourSpec:
    site = sites_mm[rng.integers(len(sites_mm))] + rng.uniform(-1.0, 1.0, 3)
    volume_mm3 = 1000.0 * math.exp(rng.uniform(math.log(12.0), math.log(125.0)))
    r_whole = (3.0 * volume_mm3 / (4.0 * math.pi)) ** (1.0 / 3.0)
    r_core = r_whole * rng.uniform(0.12, 0.5) ** (1.0 / 3.0)
    r_necrosis = max(min(r_core * rng.uniform(0.2, 0.6) ** (1.0 / 3.0), r_core - 2.5), 1.5)
    offset = rng.uniform(-1.0, 1.0, 3) * 0.2 * (r_core - r_necrosis)
    stretch = np.exp(rng.normal(0.0, 0.15, 3))
    stretch /= np.prod(stretch) ** (1.0 / 3.0)
    frame = np.diag(1.0 / stretch) @ _random_rotation(rng).T
    return _TumourSpec(
        site_mm=site, r_whole=r_whole, r_core=r_core, r_necrosis=r_necrosis, necrosis_offset=offset,
        r_mass=r_core * rng.uniform(0.4, 0.75), frame=frame, max_stretch=float(stretch.max()),
        seed=int(rng.integers(2**31)),
    )


@dataclass(frozen=True)
class _Contrast:
    """Intensity model of one case."""

    means: np.ndarray  # [4, 6] float32 tissue means, sequence × tissue
    bias_plane: np.ndarray  # [4, 5, 5] B-spline controls (y, x) of the in-plane log bias
    bias_axial: np.ndarray  # [4, 4] B-spline controls (z) of the through-plane log bias
    noise: float  # noise sd as a fraction of each sequence's grey-matter mean


def _draw_contrast(rng: np.random.Generator) -> _Contrast:
    jitter = np.exp(rng.normal(0.0, 0.05, TISSUE_MEANS.shape))
    scale = np.exp(rng.normal(0.0, 0.2, (TISSUE_MEANS.shape[0], 1)))
    strength = rng.uniform(0.05, 0.15)
    bias_plane = rng.standard_normal((len(CANONICAL_CHANNELS), 5, 5)) * strength
    bias_axial = rng.standard_normal((len(CANONICAL_CHANNELS), 4)) * strength
    return _Contrast(means=(TISSUE_MEANS * jitter * scale).astype(np.float32), bias_plane=bias_plane,
                     bias_axial=bias_axial, noise=float(rng.uniform(0.015, 0.04)))


def _streams(index: int, seed: int) -> list[np.random.Generator]:
    """Independent generators of case ``index``: tumour-free, anatomy, tumour, contrast, noise."""
    if index < 0 or seed < 0:
        raise SynthmedError(f"phantom index and seed must be non-negative, got index {index}, seed {seed}")
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed, spawn_key=(index,)).spawn(5)]


def is_tumour_free(index: int, *, seed: int, fraction: float) -> bool:
    """Whether case ``index`` of the phantom with ``seed`` is tumour-free.

    Each case draws on its own from ``(seed, index)`` with probability ``fraction``, so the
    share of tumour-free cases is ``fraction`` on average (not exactly) and case ``i`` does
    not depend on the number of cases.
    """
    if not 0.0 <= fraction <= 1.0:
        raise SynthmedError(f"tumour_free_fraction must be in [0, 1], got {fraction}")
    return bool(_streams(index, seed)[0].random() < fraction)


# ----------------------------------------------------------------------------------------
# Smooth fields


def _bspline_weights(positions: np.ndarray, count: int, low: float, length: float) -> np.ndarray:
    """Cubic B-spline weights ``[len(positions), count]`` for controls spanning ``low .. low + length``.

    Control ``j`` sits at ``low + (j - 1) * step``, ``step = length / (count - 3)``. Inside the
    span each row is non-negative and sums to 1 (a field never exceeds its controls) and
    linear functions are reproduced exactly.
    """
    step = length / (count - 3)
    u = np.abs((np.asarray(positions, dtype=np.float64)[:, None] - low) / step + 1.0 - np.arange(count)[None, :])
    return np.where(u < 1.0, 2.0 / 3.0 - u**2 + 0.5 * u**3, np.where(u < 2.0, (2.0 - u) ** 3 / 6.0, 0.0))


def _control_positions(count: int, low: float, length: float) -> np.ndarray:
    """Positions (mm) of the controls of :func:`_bspline_weights`."""
    return low + (np.arange(count) - 1.0) * length / (count - 3)


def _spline_field(controls: np.ndarray, lines: tuple[np.ndarray, np.ndarray, np.ndarray], low: np.ndarray,
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
        torch.from_numpy(_bspline_weights(p, n, lo, ln).astype(np.float32))
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


def _noise_fields(rng: np.random.Generator, lines: tuple[np.ndarray, np.ndarray, np.ndarray], count: int,
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
    field = _spline_field(controls, coarse, low, length).permute(3, 0, 1, 2)  # type: ignore[arg-type]
    field = (2.0 * torch.tanh(0.5 * field))[None].contiguous()
    return F.interpolate(field, size=sizes, mode="trilinear", align_corners=True)[0].numpy()


# ----------------------------------------------------------------------------------------
# Warp


def _crop_box(anatomy: _Anatomy, affine: np.ndarray, shape: tuple[int, int, int],
              margin_mm: float) -> tuple[slice, slice, slice]:
    """Slices ``(D, H, W)`` of the grid that can hold the warped brain (``margin_mm`` to spare)."""
    push = np.linalg.inv(anatomy.pull)
    world = _BRAIN_CENTRE_MNI + anatomy.shift + np.einsum("ij,kj->ki", push, _template().surface_mm - _BRAIN_CENTRE_MNI)
    margin = margin_mm * np.abs(push).sum(axis=1).max()
    vox = _apply(np.linalg.inv(affine), np.stack([world.min(0) - margin, world.max(0) + margin]))
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


def _warp(anatomy: _Anatomy, affine: np.ndarray, box: tuple[slice, ...],
          mass: tuple[np.ndarray, float] | None) -> torch.Tensor:
    """Warp the template maps onto ``box`` of the phantom grid.

    Args:
        affine: the phantom grid's affine.
        mass: ``(centre, radius)`` (world mm) of the mass effect, or None.

    Returns:
        float32 ``[3, d, h, w]`` — GM, WM, brain mask on the box.
    """
    spacing = np.abs(np.diag(affine)[:3])  # x, y, z
    maps, maps_affine = _template_maps(tuple(max(1, int(s)) for s in spacing[::-1]))  # type: ignore[arg-type]
    lines = _world_lines(affine, box)

    # MNI mm → grid_sample's normalised coordinates (align_corners=True): norm = G @ mni + g.
    sizes = np.array(maps.shape[2:][::-1], dtype=np.float64)  # x, y, z
    to_norm = np.diag(np.append(2.0 / (sizes - 1.0), 1.0))
    to_norm[:3, 3] = -1.0
    to_norm = to_norm @ np.linalg.inv(maps_affine)
    g_lin, g_off = to_norm[:3, :3], to_norm[:3, 3]
    # The linear part of the pull-back, written as B-spline controls (which reproduce linear
    # functions exactly), plus the displacement: one separable evaluation gives the grid.
    low, length = _FOV_LOW_MM, np.array(FIELD_OF_VIEW_MM)
    counts = anatomy.controls.shape[1:]
    pos = np.stack(np.meshgrid(*[_control_positions(n, lo, ln) for n, lo, ln in zip(counts, low[::-1], length[::-1])],
                               indexing="ij")[::-1], axis=-1)  # [nz, ny, nx, (x, y, z)]
    linear = _BRAIN_CENTRE_MNI + np.einsum("ij,zyxj->zyxi", anatomy.pull, pos - _BRAIN_CENTRE_MNI - anatomy.shift)
    controls = np.einsum("ij,zyxj->izyx", g_lin, linear) + g_off[:, None, None, None]
    controls += np.einsum("ij,jzyx->izyx", g_lin, anatomy.controls)
    grid = _spline_field(controls, lines, low, length)

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


def _tumour_centre(anatomy: _Anatomy, site_mm: np.ndarray) -> np.ndarray:
    """World point (mm) that the warp maps onto MNI ``site_mm`` (fixed-point inversion)."""
    push = np.linalg.inv(anatomy.pull)
    low, length = _FOV_LOW_MM, np.array(FIELD_OF_VIEW_MM)
    x = _BRAIN_CENTRE_MNI + anatomy.shift + push @ (site_mm - _BRAIN_CENTRE_MNI)
    for _ in range(8):
        w = [_bspline_weights(np.array([p]), n, lo, ln)[0]
             for p, n, lo, ln in zip(x[::-1], anatomy.controls.shape[1:], low[::-1], length[::-1])]
        displacement = np.einsum("kabc,a,b,c->k", anatomy.controls, *w)
        x = _BRAIN_CENTRE_MNI + anatomy.shift + push @ (site_mm - _BRAIN_CENTRE_MNI - displacement)
    return x


# ----------------------------------------------------------------------------------------
# Tumour


@dataclass
class _TumourBox:
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


def _draw_tumour_labels(spec: _TumourSpec, centre_vox: np.ndarray, spacing_zyx: np.ndarray, gm: np.ndarray,
                        wm: np.ndarray, mask: np.ndarray) -> _TumourBox:
    """Draw the tumour's labels and texture around ``centre_vox``.

    Args:
        centre_vox: tumour centre in (fractional) voxel indices ``(z, y, x)`` of the arrays.
        spacing_zyx: voxel size in mm.
        gm, wm, mask: ``[d, h, w]`` warped GM, WM and brain-mask maps.

    Returns:
        The labels on the whole tumour's bounding box (plus two voxels).
    """
    rng = np.random.default_rng(spec.seed)
    cross = ndimage.generate_binary_structure(3, 1)
    grow = max(1, int(round(2.0 / spacing_zyx.min())))  # edema at least ~2 mm around the core
    box = _box_around(centre_vox, spec.r_whole * _WHOLE_BOUND * spec.max_stretch + 2.0 * spacing_zyx.max(),
                      spacing_zyx, mask.shape)
    rel = [(np.arange(sl.start, sl.stop) - c) * s for sl, c, s in zip(box, centre_vox, spacing_zyx)]  # z, y, x mm
    lobes = _noise_fields(rng, tuple(rel), 3, cell_mm=max(0.6 * spec.r_core, 6.0))  # type: ignore[arg-type]
    rough = _noise_fields(rng, tuple(rel), 3, cell_mm=5.0)  # type: ignore[arg-type]
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

    # Shrink to the tumour's bounding box plus two voxels (room for partial-volume smoothing).
    tight = []
    for axis in range(3):
        present = np.nonzero(whole.any(axis=tuple(a for a in range(3) if a != axis)))[0]
        tight.append(slice(max(int(present[0]) - 2, 0), min(int(present[-1]) + 3, whole.shape[axis])))
    tight_box = tuple(slice(sl.start + t.start, sl.start + t.stop) for sl, t in zip(box, tight))
    return _TumourBox(box=tight_box, labels=labels[tuple(tight)], modulation=modulation[(slice(None), *tight)])


# ----------------------------------------------------------------------------------------
# The case


@dataclass
class PhantomTissues:
    """The tissue fractions mixed into a phantom case's intensities.

    Attributes:
        fractions: float32 ``[6, D, H, W]`` in :data:`TISSUES` order (CSF, GM, WM, NCR, ED,
            ET); they sum to 1 in the brain and are 0 outside it. The tumour fractions are
            the labels' partial-volume maps (the labels smoothed by a 0.6-voxel Gaussian).
        brain: bool ``[D, H, W]``, the warped brain mask (exactly where the images are non-zero).
    """

    fractions: np.ndarray
    brain: np.ndarray

    def __getitem__(self, name: str) -> np.ndarray:
        """Fraction map ``[D, H, W]`` of one tissue by name, e.g. ``tissues["wm"]``."""
        return self.fractions[TISSUES.index(name)]


def phantom_case(index: int, *, seed: int, shape: tuple[int, int, int] = DEFAULT_SHAPE, tumour: bool = True) -> Case:
    """Synthesise case ``index`` of the phantom with ``seed``.

    Returns:
        A :class:`Case`: id ``BraTS2021_{index:05d}``; ``images`` float32 ``[4, D, H, W]`` of
        integer intensities (0 outside the brain, ≥ 1 inside); canonical ``label`` uint8
        ``[D, H, W]`` with 1 NCR, 2 ED, 3 ET all present (all 0 when ``tumour`` is false);
        channels ``t1, t1ce, t2, flair``; spacing ``(155/D, 240/H, 240/W)`` mm, i.e. 1 mm at
        the default shape; a RAS+ affine (:func:`phantom_geometry`).
    """
    return phantom_sample(index, seed=seed, shape=shape, tumour=tumour)[0]


def phantom_tissues(index: int, *, seed: int, shape: tuple[int, int, int] = DEFAULT_SHAPE,
                    tumour: bool = True) -> PhantomTissues:
    """The tissue fractions behind :func:`phantom_case` with the same arguments."""
    tissues = phantom_sample(index, seed=seed, shape=shape, tumour=tumour, tissues=True)[1]
    assert tissues is not None
    return tissues


def phantom_sample(index: int, *, seed: int, shape: tuple[int, int, int] = DEFAULT_SHAPE, tumour: bool = True,
                   tissues: bool = False) -> tuple[Case, PhantomTissues | None]:
    """:func:`phantom_case` and, when ``tissues`` is true, its :class:`PhantomTissues` (else None).

    Runs torch on one thread for its duration: the phantom's torch work is small
    memory-bound kernels and a ``grid_sample`` torch does not parallelise on CPU, so a second
    thread gains little on an idle machine and loses a lot on a busy one; one thread also
    makes the arrays identical in every process by construction.
    """
    with torch_threads(1):
        return _phantom_sample(index, seed=seed, shape=shape, tumour=tumour, tissues=tissues)


def _phantom_sample(index: int, *, seed: int, shape: tuple[int, int, int], tumour: bool,
                    tissues: bool) -> tuple[Case, PhantomTissues | None]:
    shape = tuple(int(n) for n in shape)  # type: ignore[assignment]
    spacing, affine = phantom_geometry(shape)
    _, anatomy_rng, tumour_rng, contrast_rng, noise_rng = _streams(index, seed)
    anatomy = _draw_anatomy(anatomy_rng)
    spec = _draw_tumour(tumour_rng, _template().sites_mm) if tumour else None
    contrast = _draw_contrast(contrast_rng)

    mass = None
    margin = float(np.abs(anatomy.controls).max()) + 2.0 + max(spacing)
    if spec is not None:
        mass = (_tumour_centre(anatomy, spec.site_mm), spec.r_mass)
        margin += spec.r_mass
    box = _crop_box(anatomy, affine, shape, margin)
    gm, wm, mask = _warp(anatomy, affine, box, mass).numpy()
    brain = mask > 0.5

    labels = np.zeros(brain.shape, dtype=np.uint8)
    tumour_box = None
    if mass is not None and spec is not None:
        centre_vox = _apply(np.linalg.inv(affine), mass[0])[::-1] - np.array([sl.start for sl in box])
        tumour_box = _draw_tumour_labels(spec, centre_vox, np.array(spacing), gm, wm, mask)
        labels[tumour_box.box] = tumour_box.labels

    where = np.flatnonzero(brain)
    fractions, modulation = _fractions(gm, wm, mask, brain, where, tumour_box)
    values = _intensities(fractions, modulation, contrast, noise_rng, _world_lines(affine, box), where)

    # Scatter the brain voxels into the full grid.
    full_where = np.ravel_multi_index(
        tuple(i + sl.start for i, sl in zip(np.unravel_index(where, brain.shape), box)), shape)
    images = np.zeros((len(CANONICAL_CHANNELS), *shape), dtype=np.float32)
    images.reshape(len(CANONICAL_CHANNELS), -1)[:, full_where] = values
    label = np.zeros(shape, dtype=np.uint8)
    label[box] = labels
    case = Case(id=case_id(index), images=images, label=label, channels=CANONICAL_CHANNELS, spacing=spacing,
                affine=affine)
    if not tissues:
        return case, None
    full = np.zeros((len(TISSUES), *shape), dtype=np.float32)
    full.reshape(len(TISSUES), -1)[:, full_where] = fractions
    brain_full = np.zeros(shape, dtype=bool)
    brain_full.reshape(-1)[full_where] = True
    return case, PhantomTissues(fractions=full, brain=brain_full)


def _fractions(gm: np.ndarray, wm: np.ndarray, mask: np.ndarray, brain: np.ndarray, where: np.ndarray,
               tumour: _TumourBox | None) -> tuple[np.ndarray, np.ndarray]:
    """Tissue fractions and tumour texture of the ``N`` brain voxels ``where`` (flat crop indices).

    CSF is ``clip(mask - GM - WM, 0, 1)``; CSF, GM and WM are normalised to sum to 1, then
    the tumour's partial-volume fractions replace their share.

    Returns:
        ``(fractions, modulation)``: float32 ``[6, N]`` in :data:`TISSUES` order, summing to 1,
        and float32 ``[3, N]`` texture of NCR, ED and ET (1 where there is no tumour).
    """
    fractions = np.zeros((len(TISSUES), len(where)), dtype=np.float32)
    fractions[1], fractions[2] = gm.ravel()[where], wm.ravel()[where]
    np.clip(mask.ravel()[where] - fractions[1] - fractions[2], 0.0, 1.0, out=fractions[0])
    fractions[:3] /= fractions[:3].sum(axis=0, keepdims=True)
    modulation = np.ones((3, len(where)), dtype=np.float32)
    if tumour is None:
        return fractions, modulation
    # Position of each tumour-box brain voxel among the brain voxels.
    inside = brain[tumour.box]
    box_vox = tuple(i + sl.start for i, sl in zip(np.nonzero(inside), tumour.box))
    idx = np.searchsorted(where, np.ravel_multi_index(box_vox, brain.shape))
    soft = np.stack([
        ndimage.gaussian_filter((tumour.labels == value).astype(np.float32), 0.6, mode="constant")
        for value in (1, 2, 3)
    ])[:, inside]
    fractions[:3, idx] *= np.clip(1.0 - soft.sum(axis=0), 0.0, 1.0)
    fractions[3:, idx] = soft
    fractions[:, idx] /= fractions[:, idx].sum(axis=0, keepdims=True)
    modulation[:, idx] = tumour.modulation[:, inside]
    return fractions, modulation


def _bias_field(contrast: _Contrast, lines: tuple[np.ndarray, np.ndarray, np.ndarray], where: np.ndarray) -> np.ndarray:
    """Multiplicative bias field float32 ``[4, N]`` at the brain voxels ``where`` (flat indices of the box ``lines``).

    ``exp(plane(y, x) + axial(z))``: a smooth in-plane field (cubic B-spline, 5 × 5 controls
    over the field of view) plus a smooth through-plane one (4 controls), per sequence;
    evaluated only at the brain voxels.
    """
    z, y, x = lines
    low, length = _FOV_LOW_MM, np.array(FIELD_OF_VIEW_MM)
    wz = _bspline_weights(z, contrast.bias_axial.shape[1], low[2], length[2])
    wy = _bspline_weights(y, contrast.bias_plane.shape[1], low[1], length[1])
    wx = _bspline_weights(x, contrast.bias_plane.shape[2], low[0], length[0])
    plane = np.einsum("kbc,yb,xc->kyx", contrast.bias_plane, wy, wx).reshape(len(contrast.bias_plane), -1)
    axial = np.einsum("ka,za->kz", contrast.bias_axial, wz)
    per_slice = len(y) * len(x)
    log_bias = plane.astype(np.float32)[:, where % per_slice] + axial.astype(np.float32)[:, where // per_slice]
    return np.exp(log_bias, out=log_bias)


def _intensities(fractions: np.ndarray, modulation: np.ndarray, contrast: _Contrast, noise_rng: np.random.Generator,
                 lines: tuple[np.ndarray, np.ndarray, np.ndarray], where: np.ndarray) -> np.ndarray:
    """Intensities float32 ``[4, N]`` of the brain voxels.

    Partial-volume mixture of the tissue means; edema's signal fades from its mean to white
    matter's with its strength (``modulation[1]``), NCR and ET are textured multiplicatively;
    times a smooth bias field per sequence; Rician noise; rounded and clipped to 1..32000.
    """
    means = contrast.means
    ncr, ed, et, wm = (TISSUES.index(t) for t in ("ncr", "ed", "et", "wm"))
    values = np.empty((len(CANONICAL_CHANNELS), fractions.shape[1]), dtype=np.float32)
    for c in range(len(CANONICAL_CHANNELS)):  # explicit sums: no BLAS, thread-count independent
        v = means[c, 0] * fractions[0] + means[c, 1] * fractions[1] + means[c, 2] * fractions[2]
        v += means[c, ncr] * modulation[0] * fractions[ncr] + means[c, et] * modulation[2] * fractions[et]
        v += (means[c, wm] + (means[c, ed] - means[c, wm]) * modulation[1]) * fractions[ed]
        values[c] = v

    values *= _bias_field(contrast, lines, where)

    # Rician noise: magnitude of the signal plus complex Gaussian noise. The imaginary part
    # reuses the real part's draws at other voxels (independent samples, half the draws).
    sd = contrast.noise * means[:, 1:2]
    generator = torch.Generator().manual_seed(int(noise_rng.integers(2**62)))
    real = torch.randn(values.shape, generator=generator).numpy()
    imag = np.roll(real, shift=values.shape[1] // 2 + 1, axis=1)
    noisy = np.sqrt((values + sd * real) ** 2 + (sd * imag) ** 2)
    return np.clip(np.rint(noisy), 1.0, 32000.0).astype(np.float32)


# ----------------------------------------------------------------------------------------
# Writing the dataset


@dataclass(frozen=True)
class _CaseJob:
    index: int
    seed: int
    shape: tuple[int, int, int]
    tumour: bool
    root: str


def _write_case(job: _CaseJob) -> str:
    """Synthesise one case and write its BraTS files under ``job.root``; returns its id."""
    case = phantom_case(job.index, seed=job.seed, shape=job.shape, tumour=job.tumour)
    write_brats_case(case, job.root, image_dtype=np.int16)
    return case.id


def write_phantom(out: str | Path, *, cases: int, seed: int, shape: tuple[int, int, int] = DEFAULT_SHAPE,
                  tumour_free_fraction: float = 0.0, workers: int = 1, overwrite: bool = False,
                  progress: bool = True, force: bool = False) -> list[str]:
    """Write a BraTS-2021-layout phantom dataset to ``out``, atomically.

    Layout: ``out/<id>/<id>_{t1,t1ce,t2,flair,seg}.nii.gz`` for ids ``BraTS2021_00000`` …
    (images int16, ``seg`` uint8 with BraTS values 0, 1 NCR, 2 ED, 4 ET) and
    ``out/phantom.json`` with the parameters. Case ``i`` is :func:`phantom_case` ``(i, seed=seed,
    shape=shape)``, tumour-free when :func:`is_tumour_free` says so (each case independently
    with probability ``tumour_free_fraction``); its files depend neither on ``cases`` nor on
    ``workers``. Nothing is left behind on error.

    Args:
        workers: processes synthesising cases in parallel (spawn pool, one thread each).
        overwrite: replace ``out`` if it exists.
        progress: show a progress bar (cases done, ETA) on stderr.
        force: go ahead even when the memory or disk estimate (:func:`synthmed.limits.phantom_estimate`)
            exceeds what this machine has.

    Returns:
        The case ids, in order.

    Raises:
        OutputExistsError: ``out`` exists and ``overwrite`` is false (nothing is computed).
        NotOwnOutputError: ``overwrite`` on a folder that is not a phantom dataset.
        ResourceError: the estimate does not fit this machine and ``force`` is false (nothing is computed).
        SynthmedError: bad ``cases``, ``seed``, ``shape``, ``tumour_free_fraction`` or ``workers``.
    """
    from contextlib import closing

    from synthmed.outputs import PHANTOM, guard_output
    from synthmed.parallel import ordered_map
    from synthmed.progress import progress_bar

    shape = tuple(int(n) for n in shape)  # type: ignore[assignment]
    spacing, _ = phantom_geometry(shape)
    if cases < 1 or seed < 0 or workers < 1:
        raise SynthmedError(f"phantom needs cases >= 1, seed >= 0 and workers >= 1; got {cases}, {seed}, {workers}")
    guard_output(out, kind=PHANTOM, overwrite=overwrite)
    from synthmed.limits import check, phantom_estimate

    check("data phantom", phantom_estimate(cases, shape, workers), out, force=force)
    tumour_free = [is_tumour_free(i, seed=seed, fraction=tumour_free_fraction) for i in range(cases)]
    ids: list[str] = []
    with atomic_directory(out, overwrite=overwrite) as tmp:
        jobs = [_CaseJob(i, seed, shape, not tumour_free[i], str(tmp)) for i in range(cases)]  # type: ignore[arg-type]
        # closing: if anything below fails, the workers stop before the temporary folder goes
        with progress_bar(enabled=progress) as bar, \
                closing(ordered_map(_write_case, jobs, workers=min(workers, cases))) as written:
            task = bar.add_task("phantom cases", total=cases)
            for done in written:
                ids.append(done)
                bar.advance(task)
        record = {
            "generator": "synthmed phantom (nilearn MNI152 2009a template)",
            "synthmed_version": synthmed.__version__,
            "layout": "BraTS2021",
            "seed": seed,
            "cases": cases,
            "shape": list(shape),
            "nifti_shape": list(shape[::-1]),
            "spacing_mm": list(spacing),
            "tumour_free_fraction": tumour_free_fraction,
            "tumour_free_cases": [case_id(i) for i in range(cases) if tumour_free[i]],
            "channels": list(CANONICAL_CHANNELS),
            "image_dtype": "int16",
            "seg_values": {"0": "background", "1": "NCR", "2": "ED", "4": "ET"},
        }
        (tmp / "phantom.json").write_text(json.dumps(record, indent=2) + "\n")
    return ids
