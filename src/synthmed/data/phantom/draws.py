"""Random draws: a case's seed streams and the anatomy, tumour and contrast parameters drawn from them."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from synthmed.data.case import CANONICAL_CHANNELS
from synthmed.data.phantom.geometry import FIELD_OF_VIEW_MM
from synthmed.data.phantom.tissues import TISSUE_MEANS
from synthmed.errors import SynthmedError

_BASE_SCALE = 0.95  # MNI152 brains are larger than average
_CONTROL_SPACING_MM = 30.0  # displacement B-spline controls


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
class Anatomy:
    """The warp: MNI point ``= c + pull @ (x - c - shift) + displacement(x)`` (mm, c the brain centre)."""

    pull: np.ndarray  # [3, 3] subject → MNI linear part
    shift: np.ndarray  # [3] mm
    controls: np.ndarray  # [3, nz, ny, nx] B-spline controls of the displacement (x, y, z parts), mm


def draw_anatomy(rng: np.random.Generator) -> Anatomy:
    """The warp of a case: a random affine around the brain centre and a smooth displacement."""
    size = math.exp(rng.normal(0.0, 0.03))
    scales = size * rng.uniform(0.95, 1.05, 3)
    scales[2] = min(scales[2], 1.03)  # keep the vertex inside the 155 mm field of view
    forward = _BASE_SCALE * _rotation(rng.uniform(-1.0, 1.0, 3) * np.array([6.0, 4.0, 6.0])) @ np.diag(scales)
    shift = rng.uniform(-1.0, 1.0, 3) * np.array([4.0, 4.0, 2.0])
    sigma = rng.uniform(1.5, 3.0)
    controls = np.clip(rng.standard_normal((3, *_control_counts())), -3.0, 3.0) * sigma
    return Anatomy(pull=np.linalg.inv(forward), shift=shift, controls=controls)


#: Range of the core's (NCR + ET) share of the whole tumour's nominal volume, drawn uniform.
CORE_SHARE: tuple[float, float] = (0.12, 0.5)
#: Range of the necrosis's share of the core's nominal volume, drawn uniform.
NECROSIS_SHARE: tuple[float, float] = (0.2, 0.6)


@dataclass(frozen=True)
class TumourSpec:
    """Tumour shape (mm, world axes).

    ``core_share``, ``necrosis_share`` and ``offset_unit`` are the draws behind ``r_core``,
    ``r_necrosis`` and ``necrosis_offset`` (:func:`with_composition` recomputes those from new
    shares); ``r_mass`` stays the drawn one whatever the composition.
    """

    site_mm: np.ndarray  # [3] MNI point of the centre
    r_whole: float  # equivalent-sphere radius of the whole tumour before clipping to the brain
    r_core: float
    r_necrosis: float
    necrosis_offset: np.ndarray  # [3] centre of the necrosis relative to the tumour's, mm
    r_mass: float  # radius of the ball the mass effect inserts
    frame: np.ndarray  # [3, 3] world → tumour frame (rotation and volume-preserving stretch)
    max_stretch: float  # longest semi-axis / equivalent radius
    seed: int  # stream of the shape and texture noise
    core_share: float  # nominal core volume / whole volume, in CORE_SHARE when drawn
    necrosis_share: float  # nominal necrosis / core volume before the radius bounds, in NECROSIS_SHARE when drawn
    offset_unit: np.ndarray  # [3] in [-1, 1]: the necrosis offset in units of 0.2 (r_core - r_necrosis)


def _core_radii(r_whole: float, core_share: float, necrosis_share: float,
                offset_unit: np.ndarray) -> tuple[float, float, np.ndarray]:
    """``(r_core, r_necrosis, necrosis_offset)`` of a tumour of radius ``r_whole`` with these shares.

    The necrosis keeps a rim of at least 2.5 mm of enhancing core and a radius of at least 1.5 mm.
    """
    r_core = r_whole * core_share ** (1.0 / 3.0)
    r_necrosis = max(min(r_core * necrosis_share ** (1.0 / 3.0), r_core - 2.5), 1.5)
    return r_core, r_necrosis, offset_unit * 0.2 * (r_core - r_necrosis)


def with_composition(spec: TumourSpec, core_share: float, necrosis_share: float) -> TumourSpec:
    """``spec`` with the core and necrosis of these shares (same site, size, shape, noise and mass effect)."""
    r_core, r_necrosis, offset = _core_radii(spec.r_whole, core_share, necrosis_share, spec.offset_unit)
    return dataclasses.replace(spec, r_core=r_core, r_necrosis=r_necrosis, necrosis_offset=offset,
                               core_share=float(core_share), necrosis_share=float(necrosis_share))


def draw_tumour(rng: np.random.Generator, sites_mm: np.ndarray) -> TumourSpec:
    """The tumour of a case: a site among ``sites_mm`` ``[M, 3]`` (MNI mm), sizes, shape and noise seed."""
    site = sites_mm[rng.integers(len(sites_mm))] + rng.uniform(-1.0, 1.0, 3)
    volume_mm3 = 1000.0 * math.exp(rng.uniform(math.log(12.0), math.log(125.0)))
    r_whole = (3.0 * volume_mm3 / (4.0 * math.pi)) ** (1.0 / 3.0)
    core_share = float(rng.uniform(*CORE_SHARE))
    necrosis_share = float(rng.uniform(*NECROSIS_SHARE))
    offset_unit = rng.uniform(-1.0, 1.0, 3)
    r_core, r_necrosis, offset = _core_radii(r_whole, core_share, necrosis_share, offset_unit)
    stretch = np.exp(rng.normal(0.0, 0.15, 3))
    stretch /= np.prod(stretch) ** (1.0 / 3.0)
    frame = np.diag(1.0 / stretch) @ _random_rotation(rng).T
    return TumourSpec(
        site_mm=site, r_whole=r_whole, r_core=r_core, r_necrosis=r_necrosis, necrosis_offset=offset,
        r_mass=r_core * rng.uniform(0.4, 0.75), frame=frame, max_stretch=float(stretch.max()),
        seed=int(rng.integers(2**31)), core_share=core_share, necrosis_share=necrosis_share,
        offset_unit=offset_unit,
    )


@dataclass(frozen=True)
class Contrast:
    """Intensity model of one case."""

    means: np.ndarray  # [4, 6] float32 tissue means, sequence × tissue
    bias_plane: np.ndarray  # [4, 5, 5] B-spline controls (y, x) of the in-plane log bias
    bias_axial: np.ndarray  # [4, 4] B-spline controls (z) of the through-plane log bias
    noise: float  # noise sd as a fraction of each sequence's grey-matter mean


def draw_contrast(rng: np.random.Generator) -> Contrast:
    """The intensity model of a case: jittered tissue means, bias-field controls and noise level."""
    jitter = np.exp(rng.normal(0.0, 0.05, TISSUE_MEANS.shape))
    scale = np.exp(rng.normal(0.0, 0.2, (TISSUE_MEANS.shape[0], 1)))
    strength = rng.uniform(0.05, 0.15)
    bias_plane = rng.standard_normal((len(CANONICAL_CHANNELS), 5, 5)) * strength
    bias_axial = rng.standard_normal((len(CANONICAL_CHANNELS), 4)) * strength
    return Contrast(means=(TISSUE_MEANS * jitter * scale).astype(np.float32), bias_plane=bias_plane,
                    bias_axial=bias_axial, noise=float(rng.uniform(0.015, 0.04)))


def case_streams(index: int, seed: int) -> list[np.random.Generator]:
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
    return bool(case_streams(index, seed)[0].random() < fraction)


def _case_child(index: int, seed: int, *keys: int) -> np.random.Generator:
    """A generator of stream ``keys`` below case ``index``'s seed: ``SeedSequence(seed, spawn_key=(index, *keys))``.

    :func:`case_streams` are the children ``(index, 0)`` … ``(index, 4)``; others take
    higher keys or grandchildren, so no two streams coincide.
    """
    if index < 0 or seed < 0:
        raise SynthmedError(f"phantom index and seed must be non-negative, got index {index}, seed {seed}")
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, *keys)))


def growth_stream(index: int, seed: int) -> np.random.Generator:
    """The stream of longitudinal subject ``index``'s growth draws (onset, progressor class, ``V0``, rate)."""
    return _case_child(index, seed, 5)


def visit_noise_stream(index: int, seed: int, visit: int) -> np.random.Generator:
    """The noise stream of visit ``visit`` of longitudinal subject ``index``: a child of the case's noise stream."""
    if visit < 0:
        raise SynthmedError(f"phantom visit must be non-negative, got {visit}")
    return _case_child(index, seed, 4, visit)
