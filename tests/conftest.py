"""Fixtures shared by every test folder: tiny stores written with StoreWriter (no phantom)."""

from __future__ import annotations

import pytest
from tiny_stores import make_store

from synthmed.data.store import Store


@pytest.fixture(scope="session")
def store2d(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """2D store: 8 samples of 4×16×16, the last 2 in split test."""
    return make_store(tmp_path_factory.mktemp("stores") / "s2d", dims=2)


@pytest.fixture(scope="session")
def store3d(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """3D store: 6 samples of 4×16×16×16, the last 2 in split test."""
    return make_store(tmp_path_factory.mktemp("stores") / "s3d", dims=3, n=6)
