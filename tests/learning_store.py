"""A small, simple store for the "it learns" tests: a brain-like ellipse with a tumour on an exact-zero background.

Each sample (``side`` px, 2D) has an ellipse "brain" whose centre and radii vary, with four
channels of distinct mean intensity (0.35, 0.5, 0.65, 0.8, ± 0.1 per sample, a smooth
gradient and a little noise), and a round tumour inside it: NCR core, ET rim, ED halo
(labels 1, 3, 2). Background is exactly 0 like a preprocessed store. Patients are pairs of
samples; the last ``n_test`` samples are the test split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthmed.data.store import Store, StoreWriter

CHANNEL_MEANS = (0.35, 0.5, 0.65, 0.8)


def make_learning_store(path: Path, *, n: int = 96, side: int = 16, n_test: int = 16, seed: int = 0) -> Store:
    rng = np.random.default_rng(seed)
    y, x = np.meshgrid(np.linspace(-1, 1, side), np.linspace(-1, 1, side), indexing="ij")
    images = np.zeros((n, 4, side, side), np.float32)
    labels = np.zeros((n, side, side), np.uint8)
    for i in range(n):
        cy, cx = rng.uniform(-0.1, 0.1, 2)
        ry, rx = rng.uniform(0.65, 0.85, 2)
        brain = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 < 1
        ty, tx = cy + rng.uniform(-0.3, 0.3), cx + rng.uniform(-0.3, 0.3)
        r = np.sqrt((y - ty) ** 2 + (x - tx) ** 2)
        size = rng.uniform(0.2, 0.35)
        tumour = brain & (r < size * 1.6)
        labels[i][tumour] = 2
        labels[i][brain & (r < size)] = 3
        labels[i][brain & (r < size * 0.5)] = 1
        tilt = rng.uniform(-0.1, 0.1)
        for c, mean in enumerate(CHANNEL_MEANS):
            value = mean + rng.uniform(-0.1, 0.1) + tilt * y + 0.02 * rng.standard_normal((side, side))
            value = value + np.where(labels[i] == 3, 0.15, 0.0) - np.where(labels[i] == 1, 0.15, 0.0)
            images[i, c] = np.where(brain, np.clip(value, 0.05, 1.0), 0.0)
    rows = [{"case_id": f"case{i // 2:03d}", "slice": i % 2, "split": "test" if i >= n - n_test else "train",
             "source": "learning"} for i in range(n)]
    with StoreWriter(path, dims=2, channels=("t1", "t1ce", "t2", "flair"), sample_shape=(4, side, side),
                     spacing=(1.0, 1.0, 1.0), normalisation={"kind": "test"}, provenance={"made_by": "tests"},
                     synthetic=False, chunk_samples=16) as writer:
        writer.append(images, labels, rows)
    return writer.store
