"""A PNG gallery of saliency maps: per sample, the image, its tumour outline and each model's map overlaid.

One row per sample and the columns ``image``, ``mask`` (the image with the mask's outline in
red) and one per entry of ``maps`` (titled by its name): the map, scaled by
:func:`~synthmed.classify.saliency.clip_for_display` over the slice shown, over the image,
with the mask's outline in white. A 3D sample shows one axial slice, the same in every
column: the one through the mask's centre of mass, or, when the mask is empty, through the
maximum of the first map (the middle slice if there is no map). Images are drawn as
``synthmed inspect`` draws them (``origin="lower"``: anterior up) on a [0, 1] grey scale.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from scipy import ndimage

from synthmed.classify.saliency import clip_for_display
from synthmed.errors import SynthmedError
from synthmed.figures import pyplot, save_png

__all__ = ["saliency_gallery"]


def _axial_slice(mask: np.ndarray, first_map: np.ndarray | None) -> int:
    """The axial index shown for a 3D sample (see the module docstring)."""
    if mask.any():
        return int(round(ndimage.center_of_mass(mask)[0]))
    if first_map is not None:
        return int(np.unravel_index(np.argmax(first_map), first_map.shape)[0])
    return mask.shape[0] // 2


def _check(images: np.ndarray, masks: np.ndarray, maps: Mapping[str, np.ndarray], channel: int) -> None:
    if images.ndim not in (4, 5) or len(images) == 0:
        raise SynthmedError(f"saliency gallery: images must be a non-empty [N, C, H, W] or [N, C, D, H, W], "
                            f"got shape {images.shape}")
    expected = (images.shape[0], *images.shape[2:])
    if masks.shape != expected:
        raise SynthmedError(f"saliency gallery: masks have shape {masks.shape}, the images need {expected}")
    for name, m in maps.items():
        if m.shape != expected:
            raise SynthmedError(f"saliency gallery: map {name!r} has shape {m.shape}, the images need {expected}")
    if not -images.shape[1] <= channel < images.shape[1]:
        raise SynthmedError(f"saliency gallery: channel {channel} does not exist in images of {images.shape[1]} channels")


def saliency_gallery(images: np.ndarray, masks: np.ndarray, maps: Mapping[str, np.ndarray], path: str | Path, *,
                     channel: int = 0, title: str | None = None) -> Path:
    """Write the gallery of ``images`` ``[N, C, *spatial]``, ``masks`` ``[N, *spatial]`` (non-zero is
    tumour) and ``maps`` (name → ``[N, *spatial]``) as a PNG at ``path``; returns ``path``.

    ``channel`` is the image channel shown; ``title`` goes above the grid.

    Raises:
        SynthmedError: the masks or a map do not match the images' shape, or ``channel`` does
            not exist.
    """
    images = np.asarray(images, dtype=np.float32)
    masks = np.asarray(masks) != 0
    maps = {str(name): np.asarray(m, dtype=np.float32) for name, m in maps.items()}
    _check(images, masks, maps, channel)
    names = list(maps)
    rows, cols = len(images), 2 + len(names)
    plt = pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(2 * cols, 2 * rows + (0.4 if title else 0)), squeeze=False)
    for r in range(rows):
        image, mask = images[r, channel], masks[r]
        views = {name: m[r] for name, m in maps.items()}
        label = f"sample {r}"
        if image.ndim == 3:
            d = _axial_slice(mask, views[names[0]] if names else None)
            image, mask = image[d], mask[d]
            views = {name: v[d] for name, v in views.items()}
            label += f", slice {d}"
        panels = [("image", None, None), ("mask", None, "red")]
        panels += [(name, clip_for_display(views[name]), "white") for name in names]
        for c, (name, overlay, outline) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(image, cmap="gray", vmin=0, vmax=1, origin="lower")
            if overlay is not None:
                ax.imshow(overlay, cmap="inferno", vmin=0, vmax=1, alpha=0.6, origin="lower")
            if outline is not None and mask.any() and not mask.all():
                ax.contour(mask.astype(np.float32), levels=[0.5], colors=outline, linewidths=0.8, origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=9)
        axes[r, 0].set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_png(fig, path, dpi=80)
