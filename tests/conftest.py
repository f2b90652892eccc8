"""Fixtures shared by every test folder: tiny stores written with StoreWriter (no phantom).

Every test process computes with one thread (torch's intra-op pool and, through the
environment, any subprocess a test starts): a result then does not depend on the machine's
core count, and ``make test``'s worker processes (pytest-xdist, one per core) do not
oversubscribe the cores. The ``slow`` tests are collected first, so the workers share them out
before the quick ones fill the gaps.
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
from tiny_stores import make_store

from synthmed.data.store import Store

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def store2d(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """2D store: 8 samples of 4×16×16, the last 2 in split test."""
    return make_store(tmp_path_factory.mktemp("stores") / "s2d", dims=2)


@pytest.fixture(scope="session")
def store3d(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """3D store: 6 samples of 4×16×16×16, the last 2 in split test."""
    return make_store(tmp_path_factory.mktemp("stores") / "s3d", dims=3, n=6)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` (minutes each) run first, so that with workers no slow test starts last."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
