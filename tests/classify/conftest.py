"""Stores for the classifier tests: every case has a tumour-bearing and a tumour-free sample.

The tumour is a bright blob in channels 1-3 with its labels (ET core, NCR, ED rim), on a smooth
random background: ``presence`` is learnable in a few steps, and each test subject has both
classes (AUROC is defined per subject bootstrap)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny_stores import with_visits

from synthmed.data.store import Store, StoreWriter


def make_presence_store(path: Path, *, dims: int = 2, cases: int = 8, side: int = 16, test_cases: int = 2,
                        seed: int = 0, visits: int | None = None) -> Store:
    """``2 × cases`` samples: slice 0 of each case has a tumour, slice 1 none; the last ``test_cases`` in test.

    ``visits``: a longitudinal store, each subject ``visits`` consecutive cases
    (:func:`tiny_stores.with_visits`; make ``test_cases`` a multiple of ``visits``)."""
    rng = np.random.default_rng(seed)
    spatial = (side,) * dims
    grid = np.stack(np.meshgrid(*(np.linspace(-1, 1, side),) * dims, indexing="ij"))
    n = 2 * cases
    images = np.empty((n, 4, *spatial), np.float32)
    labels = np.zeros((n, *spatial), np.uint8)
    for i in range(n):
        for c in range(4):
            images[i, c] = np.clip(0.4 + 0.1 * np.cos(3 * grid[0] + c) + 0.05 * rng.standard_normal(spatial), 0, 1)
        if i % 2 == 0:
            centre = rng.uniform(-0.4, 0.4, size=(dims,) + (1,) * dims)
            r = np.sqrt(((grid - centre) ** 2).sum(0))
            labels[i][r < 0.45] = 2
            labels[i][r < 0.3] = 1
            labels[i][r < 0.15] = 3
            images[i, 1:][:, r < 0.45] = np.clip(images[i, 1:][:, r < 0.45] + 0.4, 0, 1)
    rows = [{"case_id": f"case{i // 2}", "slice": i % 2 if dims == 2 else -1,
             "split": "test" if i // 2 >= cases - test_cases else "train", "source": "test"} for i in range(n)]
    if visits is not None:
        with_visits(rows, visits)
    with StoreWriter(path, dims=dims, channels=("t1", "t1ce", "t2", "flair"), sample_shape=(4, *spatial),
                     spacing=(1.0, 1.0, 1.0), normalisation={"kind": "test"}, provenance={"made_by": "tests"},
                     synthetic=False, chunk_samples=4) as writer:
        writer.append(images, labels, rows)
    return writer.store


@pytest.fixture(scope="session")
def presence2d(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """2D: 16 cases of two 4×16×16 slices (one with a tumour), 4 cases in test."""
    return make_presence_store(tmp_path_factory.mktemp("cls") / "presence2d", cases=16, test_cases=4)


@pytest.fixture(scope="session")
def presence3d(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """3D: 4 cases of two 4×16³ volumes (one with a tumour), 1 case in test."""
    return make_presence_store(tmp_path_factory.mktemp("cls") / "presence3d", dims=3, cases=4, test_cases=1)


@pytest.fixture(scope="session")
def visits2d(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """2D longitudinal: 12 subjects of 2 visits (cases) of two slices (one with a tumour); 4 subjects in test."""
    return make_presence_store(tmp_path_factory.mktemp("cls") / "visits2d", cases=24, test_cases=8, visits=2)
