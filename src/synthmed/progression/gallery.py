"""A PNG gallery of predicted follow-ups: per subject, its baseline, the predicted follow-up and the true one.

One row per subject, three columns (``baseline``, ``predicted``, ``true follow-up``): the last image
channel (FLAIR in canonical stores) on a [0, 1] grey scale with the mask overlaid in the BraTS
colours, drawn as ``synthmed data inspect`` draws samples
(:func:`~synthmed.data.inspect.show_sample`; anterior up). Each row is labelled (e.g. the
subject, its class and risk).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from synthmed.data.inspect import show_sample
from synthmed.errors import SynthmedError
from synthmed.figures import pyplot, save_png

__all__ = ["progression_gallery"]

COLUMNS = ("baseline", "predicted", "true follow-up")


def progression_gallery(baseline: np.ndarray, baseline_masks: np.ndarray, predicted: np.ndarray,
                        predicted_masks: np.ndarray, true: np.ndarray, true_masks: np.ndarray, path: str | Path, *,
                        row_labels: Sequence[str] | None = None, title: str | None = None) -> Path:
    """Write the gallery (the module docstring) of images ``[N, C, H, W]`` and masks ``[N, H, W]`` to ``path``.

    Raises:
        SynthmedError: no rows, or arrays whose shapes do not match.
    """
    images = [np.asarray(a, np.float32) for a in (baseline, predicted, true)]
    masks = [np.asarray(m) for m in (baseline_masks, predicted_masks, true_masks)]
    if images[0].ndim != 4 or not len(images[0]):
        raise SynthmedError(f"progression gallery: images must be a non-empty [N, C, H, W], got {images[0].shape}")
    for a, m in zip(images, masks):
        if a.shape != images[0].shape or m.shape != (a.shape[0], *a.shape[2:]):
            raise SynthmedError(f"progression gallery: images {a.shape} and masks {m.shape} do not match "
                                f"{images[0].shape}")
    rows = len(images[0])
    labels = list(row_labels) if row_labels is not None else [f"subject {r}" for r in range(rows)]
    plt = pyplot()
    fig, axes = plt.subplots(rows, len(COLUMNS), figsize=(2 * len(COLUMNS), 2 * rows + (0.4 if title else 0)),
                             squeeze=False)
    for r in range(rows):
        for c, name in enumerate(COLUMNS):
            ax = axes[r, c]
            show_sample(ax, images[c][r, -1], masks[c][r])
            if r == 0:
                ax.set_title(name, fontsize=9)
        axes[r, 0].set_ylabel(labels[r], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_png(fig, path, dpi=80)
