"""Stores for the segmentation tests: real (tiny_stores) and synthetic (one case per sample, split train)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_stores import make_store

from synthmed.data.store import Store, StoreWriter


def make_synthetic(path: Path, *, n: int = 6, side: int = 16, dims: int = 2, seed: int = 1,
                   channels: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")) -> Store:
    """A synthetic store like `generator sample` writes: split train only, case ids syn_00000…"""
    real = make_store(path.with_name(path.name + "-src"), dims=dims, n=n, side=side, n_test=0, seed=seed)
    images, labels = real.read(slice(None))
    images = images[:, : len(channels)]
    rows = [{"case_id": f"syn_{i:05d}", "slice": -1, "split": "train", "source": "generator"} for i in range(n)]
    with StoreWriter(path, dims=dims, channels=channels, sample_shape=(len(channels), *(side,) * dims),
                     spacing=(1.0, 1.0, 1.0), normalisation={}, provenance={"generator": "test"}, synthetic=True,
                     chunk_samples=4) as writer:
        writer.append(images, labels, rows)
    return writer.store


@pytest.fixture(scope="session")
def syn2d(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """Synthetic 2D store: 6 samples of 4×16×16, split train."""
    return make_synthetic(tmp_path_factory.mktemp("seg") / "syn2d")


@pytest.fixture(scope="session")
def real2d(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """Real 2D store: 16 slices of 8 cases (2 slices each), the last 2 cases (4 slices) in test."""
    return make_store(tmp_path_factory.mktemp("seg") / "real2d", dims=2, n=16, n_test=4, seed=3)


@pytest.fixture(scope="session")
def longitudinal2d(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """Real longitudinal 2D store: 8 subjects of 2 visits (cases) of 2 slices, the last 2 subjects in test."""
    return make_store(tmp_path_factory.mktemp("seg") / "longitudinal2d", dims=2, n=32, n_test=8, seed=5, visits=2)
