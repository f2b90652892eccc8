"""The anatomy template: nilearn's MNI152 maps, loaded once per process, and what is derived from them."""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from synthmed.data.phantom.geometry import apply_affine

_MNI_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}


@dataclass(frozen=True)
class MniTemplate:
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


def load_mni152() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """GM, WM, brain mask (float32 ``(x, y, z)`` arrays in 0–1) and affine of nilearn's MNI152.

    Reads the 1 mm files bundled in nilearn and applies the same steps as
    ``nilearn.datasets.load_mni152_{gm,wm}mni_template(resolution=1)`` (scale to a maximum of 1)
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
def mni_template() -> MniTemplate:
    """Load the MNI152 maps once per process and derive the surface and tumour sites."""
    gm, wm, mask, affine = load_mni152()
    gm, wm = np.clip(gm, 0.0, 1.0), np.clip(wm, 0.0, 1.0)
    maps = torch.from_numpy(np.ascontiguousarray(np.stack([gm, wm, mask]).transpose(0, 3, 2, 1)))

    brain = mask > 0.5
    coarse = brain[::2, ::2, ::2]
    surface = coarse & ~ndimage.binary_erosion(coarse)
    surface_mm = apply_affine(affine, np.argwhere(surface) * 2.0)
    # Tumour sites: white matter at least 15 mm from the brain's edge, in the cerebrum.
    depth = ndimage.distance_transform_edt(coarse) * 2.0
    vox = np.argwhere((wm[::2, ::2, ::2] > 0.6) & (depth > 15.0)) * 2.0
    mm = apply_affine(affine, vox)
    cerebrum = (mm[:, 2] > -20.0) & ~((mm[:, 1] < -45.0) & (mm[:, 2] < 5.0))
    return MniTemplate(maps=maps, affine=affine, surface_mm=surface_mm, sites_mm=mm[cerebrum])


@functools.lru_cache(maxsize=4)
def template_maps(factor: tuple[int, int, int]) -> tuple[torch.Tensor, np.ndarray]:
    """The template maps averaged over blocks of ``factor`` ``(z, y, x)`` voxels, and their affine.

    Used when the phantom grid is coarser than the template's 1 mm, so each voxel averages
    the anatomy it covers (partial volume) instead of aliasing it; ``(1, 1, 1)`` is the maps
    unchanged.

    Returns:
        ``(maps, affine)``: float32 ``[1, 3, Z', Y', X']`` in ``channels_last_3d`` memory
        format (faster ``grid_sample`` of several channels; same values) and its voxel
        ``(x, y, z)`` → mm affine.
    """
    template = mni_template()
    maps = template.maps[None]
    if factor != (1, 1, 1):
        maps = F.avg_pool3d(maps, factor, stride=factor)
    block = np.eye(4)
    block[:3, :3] = np.diag(np.array(factor[::-1], dtype=np.float64))
    block[:3, 3] = (np.array(factor[::-1]) - 1.0) / 2.0  # a block's centre in template voxels
    return maps.contiguous(memory_format=torch.channels_last_3d), template.affine @ block
