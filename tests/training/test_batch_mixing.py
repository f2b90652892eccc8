"""Training batches mix patients like a uniform draw, while the stream stays exact and cheap.

Stores here are written in case order (all slices of a case are consecutive, as ``data
prepare`` writes them), so a chunk holds neighbouring slices of one or two cases: the
layout where reading batches in chunk order gives one-patient batches.
"""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import hypergeom

from synthmed.data.store import Store, StoreWriter
from synthmed.data.store.chunk_reader import ChunkReader
from synthmed.errors import DataError
from synthmed.training import batch_stream
from synthmed.training.data import StepBatchSampler, mixing_window


def case_ordered_store(path: Path, *, cases: int, slices: int, chunk: int, side: int = 4) -> Store:
    """``cases × slices`` samples, case by case; every pixel of sample ``i`` holds ``i / n``
    (so a batch tells which samples it holds); the last two cases are split ``test``."""
    n = cases * slices
    images = np.broadcast_to((np.arange(n, dtype=np.float32) / n)[:, None, None, None], (n, 4, side, side)).copy()
    labels = (np.arange(n) % 4).astype(np.uint8)[:, None, None].repeat(side, 1).repeat(side, 2)
    rows = [{"case_id": f"p{i // slices:03d}", "slice": i % slices, "split": "test" if i // slices >= cases - 2 else "train",
             "source": "test"} for i in range(n)]
    with StoreWriter(path, dims=2, channels=("t1", "t1ce", "t2", "flair"), sample_shape=(4, side, side),
                     spacing=(1, 1, 1), normalisation={}, provenance={}, synthetic=False, chunk_samples=chunk) as w:
        w.append(images, labels, rows)
    return w.store


def sample_index(images: torch.Tensor, n: int) -> np.ndarray:
    """Store indices of a batch of :func:`case_ordered_store` images."""
    return np.rint(images[:, 0, 0, 0].numpy().astype(np.float64) * n).astype(np.int64)


def uniform_distinct(case_codes: np.ndarray, batch: int) -> float:
    """Expected distinct cases in ``batch`` samples drawn uniformly without replacement
    (the batch of a uniformly shuffled epoch): sum over cases of 1 - P(none of its samples)."""
    counts = np.bincount(case_codes)
    return float(sum(1 - hypergeom(int(counts.sum()), int(m), batch).pmf(0) for m in counts))


@pytest.mark.parametrize(
    ("cases", "slices", "chunk", "batch"),
    [
        (14, 20, 32, 16),  # 12 training cases, few chunks of 1–2 cases: like a 64 px phantom store
        (82, 12, 6, 8),  # many small chunks: the mixing window is a fraction of the store
    ],
)
def test_batches_hold_as_many_cases_as_a_uniform_draw(tmp_path: Path, cases: int, slices: int, chunk: int,
                                                      batch: int) -> None:
    store = case_ordered_store(tmp_path / "s", cases=cases, slices=slices, chunk=chunk)
    ds = store.dataset(split="train")
    _, codes = np.unique(store.samples["case_id"].to_numpy(), return_inverse=True)
    train_codes = codes[ds.indices]
    steps = 2 * len(ds) // batch  # two epochs
    stream = batch_stream(ds, batch, seed=0)
    distinct = []
    for _ in range(steps):
        images, _labels = next(stream)
        distinct.append(len(np.unique(codes[sample_index(images, len(store))])))
    ratio = np.mean(distinct) / uniform_distinct(train_codes, batch)
    assert ratio >= 0.9, f"{np.mean(distinct):.2f} distinct cases per batch, {ratio:.3f} of uniform"


def test_mixed_stream_is_exact_on_resume_and_across_ranks(tmp_path: Path) -> None:
    store = case_ordered_store(tmp_path / "s", cases=42, slices=10, chunk=4)
    ds = store.dataset(split="train")  # 400 samples, 100 chunks: several windows per epoch
    per_epoch = len(ds) // 8
    one = batch_stream(ds, 8, seed=3)
    seq = [next(one) for _ in range(per_epoch + 6)]
    got = np.concatenate([sample_index(im, len(store)) for im, _ in seq[:per_epoch]])
    assert sorted(got.tolist()) == ds.indices.tolist()  # an epoch draws every sample once
    for s, (images, labels) in enumerate(seq):  # labels travel with their images
        idx = sample_index(images, len(store))
        assert torch.equal(labels[:, 0, 0], torch.from_numpy((idx % 4).astype(np.uint8)))
        assert (store.indices("train")[StepBatchSampler(ds, 8, seed=3).positions(s)] == idx).all()
    start = per_epoch - 2  # resume just before an epoch boundary
    resumed = batch_stream(ds, 8, seed=3, start_step=start)
    for s in range(start, per_epoch + 6):
        images, labels = next(resumed)
        assert torch.equal(images, seq[s][0]) and torch.equal(labels, seq[s][1])
    ranks = [batch_stream(ds, 4, seed=3, start_step=start, rank=r, world_size=2) for r in range(2)]
    for s in range(start, per_epoch + 6):
        parts = [next(r) for r in ranks]
        assert torch.equal(torch.cat([p[0] for p in parts]), seq[s][0])
        assert torch.equal(torch.cat([p[1] for p in parts]), seq[s][1])
    assert not torch.equal(next(batch_stream(ds, 8, seed=4))[0], seq[0][0])


def test_mixed_stream_decodes_each_chunk_once_per_epoch_with_flat_memory(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    decodes: list[int] = []
    original = ChunkReader.read_into

    def read_into(self, k, out):  # type: ignore[no-untyped-def]
        if out.dtype == np.float32:
            decodes.append(k)
        return original(self, k, out)

    monkeypatch.setattr(ChunkReader, "read_into", read_into)
    windows, peaks = [], []
    for cases in (62, 122):  # 600 and 1200 training samples in chunks of 5
        store = case_ordered_store(tmp_path / f"s{cases}", cases=cases, slices=10, chunk=5)
        ds = store.dataset(split="train")
        decodes.clear()
        stream = batch_stream(ds, 8, seed=0)
        for _ in range(2 * len(ds) // 8):  # two epochs
            next(stream)
        stream.close()
        chunks = len(ds) // 5
        # chunks are decoded in the order the stream needs them (a few batches read ahead)
        assert sorted(decodes[: 2 * chunks]) == sorted(list(range(chunks)) * 2), "each chunk decoded once per epoch"
        assert len(decodes) <= 2 * chunks + 4 * 8
        windows.append(stream.window)
        peaks.append(stream.peak_pending)
    # memory does not grow with N: the window is bounded by that of an endless store, and the
    # batches being filled hold at most one window's samples (K to 2K - 1 chunks of 5) + 2 batches
    endless = mixing_window(np.full(10**6, 5), 8)
    assert max(windows) <= endless < 60 and max(peaks) <= (2 * endless - 1) * 5 / 8 + 2


def test_mixed_stream_with_workers_matches_the_main_process(tmp_path: Path) -> None:
    store = case_ordered_store(tmp_path / "s", cases=22, slices=10, chunk=4)
    ds = store.dataset(split="train")
    plain = batch_stream(ds, 8, seed=1, start_step=3)
    workers = batch_stream(ds, 8, seed=1, start_step=3, num_workers=2)
    for _ in range(30):
        a, b = next(plain), next(workers)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_a_read_error_reaches_the_consumer_and_streams_stop_their_thread(tmp_path: Path) -> None:
    store = case_ordered_store(tmp_path / "s", cases=12, slices=10, chunk=4)
    ds = store.dataset(split="train")
    before = threading.active_count()
    stream = batch_stream(ds, 8, seed=0)
    next(stream)
    del stream
    gc.collect()
    for _ in range(50):  # the read-ahead thread notices within its 0.1 s poll
        if threading.active_count() <= before:
            break
        time.sleep(0.05)
    assert threading.active_count() <= before
    for chunk in (store.path / "image" / "c").iterdir():  # truncate every image chunk
        (chunk / "0" / "0" / "0").write_bytes(b"\0" * 20)
    with pytest.raises(DataError, match="chunk"):
        next(batch_stream(store.dataset(split="train"), 8, seed=0))
