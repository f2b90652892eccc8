"""Fixtures shared by every test folder: tiny stores written with StoreWriter (no phantom).

Every test process computes with one thread (torch's intra-op pool and, through the
environment, any subprocess a test starts): a result then does not depend on the machine's
core count, and ``make test``'s worker processes (pytest-xdist, one per core) do not
oversubscribe the cores. The ``slow`` tests are dealt out between the workers by their
estimated ``seconds`` and run first; the quick ones fill the gaps (see
:func:`pytest_collection_modifyitems`).
"""

from __future__ import annotations

import itertools
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


def slow_seconds(item: pytest.Item) -> float | None:
    """The estimated seconds of a ``slow`` test (its ``seconds`` keyword, 60 if not given); ``None``: quick."""
    mark = item.get_closest_marker("slow")
    return None if mark is None else float(mark.kwargs.get("seconds", 60))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deal the ``slow`` tests out between the xdist workers, longest first, and run them first.

    ``--dist worksteal`` first hands worker ``k`` of ``W`` the next ``len(rest) // (W - k)``
    tests of the collection, in order; an idle worker then steals from the *end* of the busiest
    one's queue, never its next two. With every slow test at the front of the collection, one
    worker got all of them and ran the last ones alone while the other sat idle. So the
    collection is cut into those first hand-outs, each opening with its share of the slow tests
    (each in turn to the worker with the fewest estimated seconds), then quick tests in their
    collected order; a steal takes quick tests. Without xdist (one worker) slow tests come first.
    """
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    slow = sorted((item for item in items if slow_seconds(item) is not None), key=slow_seconds, reverse=True)
    quick = iter([item for item in items if slow_seconds(item) is None])
    sizes, left = [], len(items)
    for k in range(workers):
        sizes.append(left // (workers - k))
        left -= sizes[-1]
    shares: list[list[pytest.Item]] = [[] for _ in range(workers)]
    loads = [0.0] * workers
    for item in slow:
        k = min((k for k in range(workers) if len(shares[k]) < sizes[k]), key=loads.__getitem__)
        shares[k].append(item)
        loads[k] += slow_seconds(item)
    for k, share in enumerate(shares):
        share.extend(itertools.islice(quick, sizes[k] - len(share)))
    items[:] = [item for share in shares for item in share]
