"""Look at a store: a summary (counts, label balance, intensities), a PNG grid of samples and
a PNG of real samples beside synthetic ones (:func:`render_side_by_side`).

The grid has one row per sample and one column per channel, plus a last column with the
tumour mask over the last channel (FLAIR for canonical stores). Label colours follow the
BraTS convention: NCR red, ED green, ET yellow. 3D samples show the axial slice with the
most tumour (the middle slice when there is none). Rows are drawn as stored, with the
anterior side up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from synthmed.figures import save_png  # noqa: E402
from synthmed.data.case import LABEL_NAMES  # noqa: E402
from synthmed.data.store import Store  # noqa: E402
from synthmed.errors import DataError  # noqa: E402

LABEL_COLOURS = ListedColormap([(0, 0, 0, 0), (0.9, 0.1, 0.1, 0.6), (0.1, 0.8, 0.1, 0.45), (1.0, 0.9, 0.1, 0.7)])


def summarize(store: Store, batch_size: int = 256) -> dict:
    """Counts per split, label voxel fractions and per-channel intensity ranges (streamed)."""
    label_counts = np.zeros(len(LABEL_NAMES), dtype=np.int64)
    low = np.full(len(store.channels), np.inf)
    high = np.full(len(store.channels), -np.inf)
    total = np.zeros(len(store.channels))
    voxels = 0
    for images, labels, _ in store.iter_batches(batch_size):
        label_counts += np.bincount(labels.ravel(), minlength=len(LABEL_NAMES))[: len(LABEL_NAMES)]
        axes = (0, *range(2, images.ndim))
        low = np.minimum(low, images.min(axis=axes))
        high = np.maximum(high, images.max(axis=axes))
        total += images.sum(axis=axes, dtype=np.float64)
        voxels += images.size // images.shape[1]
    table = store.samples
    splits = {
        split: {"samples": int(len(rows)), "cases": int(rows["case_id"].nunique())}
        for split, rows in table.groupby("split", sort=True)
    }
    with_tumour = label_counts[1:].sum()
    return {
        "path": str(store.path),
        "dims": store.dims,
        "samples": len(store),
        "sample_shape": list(store.sample_shape),
        "channels": list(store.channels),
        "synthetic": store.synthetic,
        "splits": splits,
        "label_fraction": {LABEL_NAMES[k]: float(label_counts[k] / max(label_counts.sum(), 1)) for k in LABEL_NAMES},
        "tumour_fraction": float(with_tumour / max(label_counts.sum(), 1)),
        "intensity": {
            name: {"min": float(low[c]), "max": float(high[c]), "mean": float(total[c] / max(voxels, 1))}
            for c, name in enumerate(store.channels)
        },
        "skipped": store.meta.get("provenance", {}).get("skipped", []),
    }


def pick_samples(store: Store, n: int, seed: int = 0) -> np.ndarray:
    """``n`` sample indices spread over the store (seeded), sorted."""
    return pick_samples_of(len(store), n, seed)


def _axial(image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2D view of one sample: itself (2D) or its axial slice with the most tumour (3D)."""
    if label.ndim == 2:
        return image, label
    tumour = (label > 0).sum(axis=(1, 2))
    d = int(tumour.argmax()) if tumour.any() else label.shape[0] // 2
    return image[:, d], label[d]


def render_grid(store: Store, out: str | Path, *, n: int = 8, seed: int = 0,
                row_label: Callable[[int], str] | None = None) -> Path:
    """Write a PNG grid of ``n`` samples (see module docstring); returns its path.

    ``row_label(index)`` names the row of store sample ``index`` (default: its case id and,
    for slices, ``z<slice>``).
    """
    indices = pick_samples(store, n, seed)
    images, labels = store.read(indices)
    channels = list(store.channels)
    cols = len(channels) + 1
    fig, axes = plt.subplots(len(indices), cols, figsize=(1.8 * cols, 1.8 * len(indices)), squeeze=False)
    table = store.samples
    for row, (index, image, label) in enumerate(zip(indices, images, labels)):
        image, label = _axial(image, label)
        for col in range(cols):
            ax = axes[row, col]
            show_sample(ax, image[min(col, len(channels) - 1)], label if col == len(channels) else None)
            if row == 0:
                ax.set_title(channels[col] if col < len(channels) else "mask", fontsize=9)
        if row_label is None:
            sample = table.iloc[int(index)]
            where = f"{sample['case_id']}" + (f" z{sample['slice']}" if int(sample["slice"]) >= 0 else "")
        else:
            where = row_label(int(index))
        axes[row, 0].set_ylabel(where, fontsize=6)
    return save_png(fig, out)


def render_side_by_side(real: Store, synthetic: Sequence[tuple[str, Store]], out: str | Path, *, n: int = 3,
                        seed: int = 0, split: str | None = "train") -> Path:
    """Write a PNG with one row per ``(name, store)`` of ``synthetic``: ``n`` samples of ``real``
    (its ``split``, when the store has one; the same samples in every row) beside ``n`` of that
    store's, each as its last channel with the tumour mask overlaid; returns its path.

    Raises:
        DataError: ``synthetic`` is empty.
    """
    if not synthetic:
        raise DataError("no synthetic store to show beside the real samples", path=real.path)
    pool = real.indices(split) if split in real.splits else real.indices()
    real_images, real_labels = real.read(pool[pick_samples_of(len(pool), n, seed)])
    fig, axes = plt.subplots(len(synthetic), 2 * n, figsize=(1.1 * 2 * n, 1.15 * len(synthetic)), squeeze=False)
    for row, (name, store) in enumerate(synthetic):
        images, labels = store.read(pick_samples(store, n, seed))
        for half, (shown, masks) in enumerate(((real_images, real_labels), (images, labels))):
            for k in range(n):
                ax = axes[row, half * n + k]
                if k < len(shown):
                    image, label = _axial(shown[k], masks[k])
                    show_sample(ax, image[-1], label)
                else:  # a store with fewer than n samples: an empty cell
                    show_sample(ax, None, None)
                if row == 0 and k == 0:
                    ax.set_title("synthetic" if half else "real (training)", fontsize=7, loc="left")
        axes[row, 0].set_ylabel(name, fontsize=7)
    return save_png(fig, out)


def pick_samples_of(total: int, n: int, seed: int = 0) -> np.ndarray:
    """``n`` positions in ``range(total)`` spread over it (seeded), sorted (all when ``total <= n``)."""
    if total <= n:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))


def show_sample(ax, image: np.ndarray | None, label: np.ndarray | None) -> None:  # noqa: ANN001
    """One grid cell: a 2D ``image`` in [0, 1] (grey), ``label`` overlaid in the BraTS colours; no
    ticks (no frame either when both are ``None``: an empty cell)."""
    ax.set_xticks([])
    ax.set_yticks([])
    if image is None and label is None:
        ax.set_axis_off()
    if image is not None:
        ax.imshow(image, cmap="gray", vmin=0, vmax=1, origin="lower")
    if label is not None:
        ax.imshow(label, cmap=LABEL_COLOURS, vmin=0, vmax=3, origin="lower", interpolation="nearest")


