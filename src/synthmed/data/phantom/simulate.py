"""One phantom case: the stages (draws, warp, tumour, intensities) run in order and assembled into a Case."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthmed.data.case import CANONICAL_CHANNELS, Case
from synthmed.data.phantom.draws import (
    Anatomy,
    Contrast,
    TumourSpec,
    case_streams,
    draw_anatomy,
    draw_contrast,
    draw_tumour,
)
from synthmed.data.phantom.geometry import DEFAULT_SHAPE, apply_affine, phantom_geometry, world_lines
from synthmed.data.phantom.intensities import sequence_intensities, tissue_fractions
from synthmed.data.phantom.template import mni_template
from synthmed.data.phantom.tissues import TISSUES
from synthmed.data.phantom.tumour import TumourBox, draw_tumour_labels
from synthmed.data.phantom.warp import crop_box, tumour_centre, warp_template
from synthmed.parallel import torch_threads

#: Case id of case ``index`` (BraTS 2021 naming).
CASE_ID_FORMAT = "BraTS2021_{index:05d}"


def case_id(index: int) -> str:
    """``BraTS2021_00000``-style id of case ``index``."""
    return CASE_ID_FORMAT.format(index=index)


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
    _, anatomy_rng, tumour_rng, contrast_rng, noise_rng = case_streams(index, seed)
    spec = draw_tumour(tumour_rng, mni_template().sites_mm) if tumour else None
    scene = phantom_scene(shape, draw_anatomy(anatomy_rng), draw_contrast(contrast_rng), spec)
    tumour_box = None
    if spec is not None and scene.centre_vox is not None:
        tumour_box = draw_tumour_labels(spec, scene.centre_vox, np.array(scene.spacing), scene.gm, scene.wm,
                                        scene.mask)
    return render_case(scene, tumour_box, noise_rng, case_id(index), tissues=tissues)


@dataclass
class PhantomScene:
    """What a phantom case is drawn on before its tumour labels and noise: the warped anatomy on its crop.

    Attributes:
        shape, spacing, affine: the grid (:func:`phantom_geometry`).
        box: slices ``(D, H, W)`` of the crop holding the brain.
        gm, wm, mask: float32 ``[d, h, w]`` warped GM, WM and brain-mask maps on the crop.
        brain: bool ``[d, h, w]``, ``mask > 0.5``.
        contrast: the intensity model.
        centre_vox: the tumour centre in (fractional) crop voxel indices ``(z, y, x)``, or
            None without a tumour (then there is no mass effect either).
        centre_mm: the same point in world ``(x, y, z)`` mm, or None.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    affine: np.ndarray
    box: tuple[slice, ...]
    gm: np.ndarray
    wm: np.ndarray
    mask: np.ndarray
    brain: np.ndarray
    contrast: Contrast
    centre_vox: np.ndarray | None
    centre_mm: np.ndarray | None


def phantom_scene(shape: tuple[int, int, int], anatomy: Anatomy, contrast: Contrast,
                  spec: TumourSpec | None) -> PhantomScene:
    """Warp the template for ``anatomy``, with the mass effect of ``spec`` (none when None), onto the brain's crop."""
    shape = tuple(int(n) for n in shape)  # type: ignore[assignment]
    spacing, affine = phantom_geometry(shape)
    mass = None
    margin = float(np.abs(anatomy.controls).max()) + 2.0 + max(spacing)
    if spec is not None:
        mass = (tumour_centre(anatomy, spec.site_mm), spec.r_mass)
        margin += spec.r_mass
    box = crop_box(anatomy, affine, shape, margin)
    gm, wm, mask = warp_template(anatomy, affine, box, mass).numpy()
    centre_vox = None
    if mass is not None:
        centre_vox = apply_affine(np.linalg.inv(affine), mass[0])[::-1] - np.array([sl.start for sl in box])
    return PhantomScene(shape=shape, spacing=spacing, affine=affine, box=box, gm=gm, wm=wm, mask=mask,
                        brain=mask > 0.5, contrast=contrast, centre_vox=centre_vox,
                        centre_mm=None if mass is None else mass[0])


def render_case(scene: PhantomScene, tumour_box: TumourBox | None, noise_rng: np.random.Generator, identifier: str,
                *, tissues: bool = False) -> tuple[Case, PhantomTissues | None]:
    """The case of ``scene`` with ``tumour_box``'s labels (none when None) and noise drawn from ``noise_rng``.

    Returns:
        The :class:`Case` with id ``identifier`` and, when ``tissues`` is true, its
        :class:`PhantomTissues` (else None).
    """
    shape, box, brain = scene.shape, scene.box, scene.brain
    labels = np.zeros(brain.shape, dtype=np.uint8)
    if tumour_box is not None:
        labels[tumour_box.box] = tumour_box.labels

    where = np.flatnonzero(brain)
    fractions, modulation = tissue_fractions(scene.gm, scene.wm, scene.mask, brain, where, tumour_box)
    values = sequence_intensities(fractions, modulation, scene.contrast, noise_rng, world_lines(scene.affine, box),
                                  where)

    # Scatter the brain voxels into the full grid.
    full_where = np.ravel_multi_index(
        tuple(i + sl.start for i, sl in zip(np.unravel_index(where, brain.shape), box)), shape)
    images = np.zeros((len(CANONICAL_CHANNELS), *shape), dtype=np.float32)
    images.reshape(len(CANONICAL_CHANNELS), -1)[:, full_where] = values
    label = np.zeros(shape, dtype=np.uint8)
    label[box] = labels
    case = Case(id=identifier, images=images, label=label, channels=CANONICAL_CHANNELS, spacing=scene.spacing,
                affine=scene.affine)
    if not tissues:
        return case, None
    full = np.zeros((len(TISSUES), *shape), dtype=np.float32)
    full.reshape(len(TISSUES), -1)[:, full_where] = fractions
    brain_full = np.zeros(shape, dtype=bool)
    brain_full.reshape(-1)[full_where] = True
    return case, PhantomTissues(fractions=full, brain=brain_full)
