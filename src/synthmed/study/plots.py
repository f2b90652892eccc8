"""The study report's figures, drawn with matplotlib (Agg) and returned as PNG bytes.

Each function takes the numbers to draw, already computed (by :mod:`.details` and
:mod:`.classifier_section`), and draws nothing else: the Dice curves of the real-fraction sweep
and the pre-training curve, and the classifiers' AUROC against ε (:func:`curves_png`), memorization histograms (:func:`histogram_png`) and training curves
(:func:`generator_curves_png`, :func:`segmenter_curves_png`); :func:`rendered` takes the PNG of
a drawing function that writes a file (the galleries of :mod:`synthmed.data.inspect` and
:mod:`synthmed.metrics.memorization`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthmed.figures import png_bytes, pyplot


def rendered(draw: Callable[[Path], Any]) -> bytes:
    """The bytes of the PNG that ``draw(path)`` writes (into a temporary folder)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "figure.png"
        draw(path)
        return path.read_bytes()


def curves_png(curves: dict[str, dict[str, pd.Series]], xlabel: str, ylabel: str = "Dice",
               xlim: tuple[float, float] | None = (-0.05, 1.05), ylim: tuple[float, float] | None = None) -> bytes:
    """One panel per region (``curves[region][line] = y indexed by x``; any panel names), lines with
    markers; ``xlim`` / ``ylim`` the axes' ranges (``None``: matplotlib's)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(3.4 * len(curves), 3), squeeze=False)
    for ax, (region, lines) in zip(axes[0], curves.items()):
        for label, points in lines.items():
            ax.plot(points.index, points.values, marker="o", label=label)
        ax.set_title(region)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if xlim is not None:
            ax.set_xlim(*xlim)
        if ylim is not None:
            ax.set_ylim(*ylim)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return png_bytes(fig, dpi=90)


def histogram_png(hist: dict, threshold: float | None, gen: str) -> bytes:
    """The histogram ``{"edges", "counts"}`` of the synthetic samples' maximum correlation with a
    training sample, the ``threshold`` (if any) as a dashed line; ``gen`` names it in the title."""
    plt = pyplot()
    edges, counts = np.asarray(hist["edges"]), np.asarray(hist["counts"])
    fig, ax = plt.subplots(figsize=(4.5, 2.8))
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="0.4")
    if threshold is not None:
        ax.axvline(threshold, color="red", linestyle="--", label=f"threshold {threshold:g}")
        ax.legend(fontsize=7)
    ax.set_title(f"{gen}: max correlation with a training sample", fontsize=9)
    ax.set_xlabel("max Pearson correlation")
    ax.set_ylabel("synthetic samples")
    fig.tight_layout()
    return png_bytes(fig, dpi=90)


def _line(ax, points: pd.Series, label: str) -> None:  # noqa: ANN001
    """A curve over steps; short ones (a few logged steps) get markers so a single point shows."""
    ax.plot(points.index, points.values, label=label, marker="o" if len(points) <= 25 else None, markersize=3)


def generator_curves_png(generators: dict[str, dict[str, pd.Series]]) -> bytes:
    """One panel per generator (``generators[name][loss] = values indexed by step``), a line per loss."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(generators), figsize=(3.4 * len(generators), 2.8), squeeze=False)
    for ax, (gen, losses) in zip(axes[0], generators.items()):
        for name, points in losses.items():
            _line(ax, points, name)
        ax.set_title(gen, fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return png_bytes(fig, dpi=90)


def segmenter_curves_png(segmenter: str, curves: dict[str, dict[str, pd.Series]]) -> bytes:
    """Two panels (``curves[tag][line] = values indexed by step``; tags ``train/loss``,
    ``val/dice``), titled ``<segmenter>: <tag>``, the legend in the first."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3), squeeze=False)
    for ax, (tag, lines) in zip(axes[0], curves.items()):
        for name, points in lines.items():
            _line(ax, points, name)
        ax.set_title(f"{segmenter}: {tag}", fontsize=9)
        ax.set_xlabel("step")
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    return png_bytes(fig, dpi=90)
