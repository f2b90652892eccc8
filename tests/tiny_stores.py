"""Tiny stores for the training and generator tests, written with StoreWriter directly (no phantom)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthmed.data.store import Store, StoreWriter


def with_visits(rows: list[dict], visits: int) -> list[dict]:
    """Make ``rows`` (sample rows of a store) longitudinal, in place: the ``c``-th case id (in order
    of first appearance) becomes visit ``c % visits`` of subject ``subj{c // visits}``, with
    ``subject_id``, ``visit`` and ``months`` (6 per visit) columns. Returns ``rows``."""
    order: dict[str, int] = {}
    for row in rows:
        c = order.setdefault(row["case_id"], len(order))
        row.update(subject_id=f"subj{c // visits}", visit=c % visits, months=6.0 * (c % visits))
    return rows


def make_store(path: Path, *, dims: int = 2, n: int = 8, side: int = 16, n_test: int = 2, seed: int = 0,
               chunk_samples: int | None = 4, synthetic: bool = False, visits: int | None = None) -> Store:
    """``n`` samples (the last ``n_test`` in split test) of smooth random images and a blob mask,
    two per case (``case0``, ``case1``, …; 2D: slices 0 and 1); ``synthetic`` marks the store as a
    generator's.

    ``visits``: a longitudinal store (:func:`with_visits`: case ``c`` is visit ``c % visits`` of
    subject ``subj{c // visits}``); choose ``n_test`` a multiple of ``2 × visits`` to keep each
    subject in one split. ``None``: no subject columns (every case its own subject)."""
    rng = np.random.default_rng(seed)
    spatial = (side,) * dims
    grid = np.stack(np.meshgrid(*(np.linspace(-1, 1, side),) * dims, indexing="ij"))
    images = np.empty((n, 4, *spatial), np.float32)
    labels = np.zeros((n, *spatial), np.uint8)
    for i in range(n):
        centre = rng.uniform(-0.4, 0.4, size=(dims,) + (1,) * dims)
        r = np.sqrt(((grid - centre) ** 2).sum(0))
        labels[i][r < 0.6] = 2
        labels[i][r < 0.4] = 3
        labels[i][r < 0.2] = 1
        for c in range(4):
            images[i, c] = np.clip(0.5 + 0.3 * np.cos(3 * r + c) + 0.05 * rng.standard_normal(spatial), 0, 1)
    rows = [{"case_id": f"case{i // 2}", "slice": i % 2 if dims == 2 else -1,
             "split": "test" if i >= n - n_test else "train", "source": "test"} for i in range(n)]
    if visits is not None:
        with_visits(rows, visits)
    with StoreWriter(path, dims=dims, channels=("t1", "t1ce", "t2", "flair"), sample_shape=(4, *spatial),
                     spacing=(1.0, 1.0, 1.0), normalisation={"kind": "test"}, provenance={"made_by": "tests"},
                     synthetic=synthetic, chunk_samples=chunk_samples) as writer:
        writer.append(images, labels, rows)
    return writer.store


#: Tumour pixels of each visit (3 visits, 12 months apart) of the longitudinal store's slow, fast and
#: onset subjects at 32 px (1,024 pixels; grade edges at 7 and 14 pixels): slow stays at grade 1, fast
#: goes 1 → 2 → 3, onset (tumour-free at baseline, then slow) 0 → 1 → 1.
GROWTH_PIXELS = {"slow": (4, 5, 6), "fast": (4, 12, 30), "onset": (0, 4, 5)}


def make_longitudinal_store(path: Path, *, subjects: int = 8, test_subjects: int = 4, side: int = 32,
                            interval: float = 12.0, seed: int = 0, single_visit: bool = False) -> Store:
    """A longitudinal 2D store: ``subjects`` × 3 visits ``interval`` months apart, one sample per visit.

    Subject ``i`` (``subj0``, …) is fast when ``i`` is odd, slow otherwise, and subject 0 has a
    tumour-free baseline (onset); its tumour is the :data:`GROWTH_PIXELS` pixels nearest a centre of
    its own, bright in channels 1-3, on a background of its own with fresh noise per visit. The last
    ``test_subjects`` are in split test. ``single_visit`` keeps only the baselines (no follow-up)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    visits = 1 if single_visit else 3
    images = np.empty((subjects * visits, 4, side, side), np.float32)
    labels = np.zeros((subjects * visits, side, side), np.uint8)
    rows = []
    for i in range(subjects):
        kind = "onset" if i == 0 else ("fast" if i % 2 else "slow")
        centre = rng.uniform(side * 0.3, side * 0.7, size=2)
        order = np.argsort(((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2).ravel(), kind="stable")
        phase = rng.uniform(0, np.pi)
        for v in range(visits):
            n = i * visits + v
            mask = np.zeros(side * side, bool)
            mask[order[: GROWTH_PIXELS[kind][v]]] = True
            mask = mask.reshape(side, side)
            for c in range(4):
                base = 0.4 + 0.15 * np.cos(xx / side * 3 + phase + c) * np.sin(yy / side * 2 + c)
                images[n, c] = np.clip(base + 0.03 * rng.standard_normal((side, side)), 0, 1)
            images[n, 1:, mask] = np.clip(images[n, 1:, mask] + 0.45, 0, 1)
            labels[n][mask] = 2
            rows.append({"case_id": f"subj{i}-v{v}", "slice": 0, "split": "test" if i >= subjects - test_subjects
                         else "train", "source": "test", "subject_id": f"subj{i}", "visit": v,
                         "months": v * interval})
    with StoreWriter(path, dims=2, channels=("t1", "t1ce", "t2", "flair"), sample_shape=(4, side, side),
                     spacing=(1.0, 1.0, 1.0), normalisation={"kind": "test"}, provenance={"made_by": "tests"},
                     synthetic=False, chunk_samples=8) as writer:
        writer.append(images, labels, rows)
    return writer.store
