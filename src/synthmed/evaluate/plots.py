"""Figures of a memorization audit: the histogram of maximum correlations and a gallery of the closest pairs (PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthmed.data.store import Store
from synthmed.evaluate.audit_record import MemorizationAudit
from synthmed.figures import pyplot, save_png


def plot_histogram(result: MemorizationAudit, path: str | Path) -> Path:
    """PNG histogram of the joint maximum correlations with the threshold marked."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(result.values, bins=40, range=(min(-0.05, float(result.values.min(initial=0))), 1.0), color="0.4")
    ax.axvline(result.threshold, color="red", linestyle="--", label=f"threshold {result.threshold:g}")
    ax.set_xlabel("max Pearson correlation with a training sample")
    ax.set_ylabel("synthetic samples")
    ax.legend()
    return save_png(fig, path, dpi=100)


def _view(image: np.ndarray, channel: int) -> np.ndarray:
    """2D view of one channel: the sample itself (2D) or its middle axial slice (3D)."""
    x = image[channel]
    return x if x.ndim == 2 else x[x.shape[0] // 2]


def plot_gallery(result: MemorizationAudit, synthetic: Store, train: Store, path: str | Path, *, top_k: int = 8,
                 channel: int = -1) -> Path:
    """PNG of the ``top_k`` closest pairs: synthetic | nearest real | absolute difference.

    Rows are sorted by decreasing correlation; ``channel`` is the channel shown (default the
    last, FLAIR for canonical stores); 3D samples show their middle axial slice.
    """
    plt = pyplot()
    order = np.argsort(-result.values, kind="stable")[: max(1, top_k)]
    syn, _ = synthetic.read(order)
    real, _ = train.read(result.indices[order])
    ch = channel % len(synthetic.channels)
    rows = len(order)
    fig, axes = plt.subplots(rows, 3, figsize=(6, 2 * rows), squeeze=False)
    for r, i in enumerate(order):
        a, b = _view(syn[r], ch), _view(real[r], ch)
        for ax, img, title, cmap, vmax in ((axes[r, 0], a, f"synthetic {i}", "gray", 1),
                                           (axes[r, 1], b, f"train {int(result.indices[i])}", "gray", 1),
                                           (axes[r, 2], np.abs(a - b), f"|diff|, r={result.values[i]:.3f}", "magma", 1)):
            ax.imshow(img, cmap=cmap, vmin=0, vmax=vmax, origin="lower")  # anterior up, as synthmed inspect
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    return save_png(fig, path, dpi=80)
