"""Store streaming throughput vs reading the same arrays from a memory-mapped ``.npy``.

Targets, each measured in the same process with a warm page cache:

* in order: streaming a Store (``Store.iter_batches``, the path metrics and sampling use)
  reaches at least 50 % of the samples/s of copying the same batches out of
  ``np.load(..., mmap_mode="r")``;
* the training order: ``synthmed.training.batch_stream`` (shuffled, batches mixing chunks)
  reaches at least 50 % of a shuffled memory-mapped read: each epoch a seeded permutation of
  all samples, each batch read with one fancy index (sorted within the batch, the baseline's
  best case) into tensors.

Data: 2D samples of 4 channels × 256 × 256 float32 (the reference study's slice size) with
a zero background around a brain-like ellipse filled with smooth tissue contrast plus
noise, so compression behaves like normalised MR; labels are a small tumour blob.

Run ``python benchmarks/store_stream.py`` (no arguments needed); writes
``benchmarks/results/store_stream.json`` and prints it.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from _common import write_result

from synthmed.data.store import (
    DEFAULT_CHUNK_BYTES,
    DEFAULT_CLEVEL,
    DEFAULT_CNAME,
    DEFAULT_SHUFFLE,
    Store,
    StoreWriter,
    default_chunk_samples,
)
from synthmed.training import batch_stream

TARGET = 0.5
RESULTS = Path(__file__).resolve().parent / "results" / "store_stream.json"


def brain_like(rng: np.random.Generator, n: int, channels: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``[n, C, size, size]`` in [0, 1] and uint8 ``[n, size, size]`` labels 0..3."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size - 0.5
    images = np.zeros((n, channels, size, size), np.float32)
    labels = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        a, b = rng.uniform(0.28, 0.38), rng.uniform(0.34, 0.44)
        r2 = (xx / a) ** 2 + (yy / b) ** 2
        brain = r2 < 1
        tissue = 0.5 + 0.2 * np.cos(9 * xx + rng.uniform(0, 6)) * np.sin(7 * yy + rng.uniform(0, 6))
        cy, cx, rt = rng.uniform(-0.15, 0.15), rng.uniform(-0.15, 0.15), rng.uniform(0.03, 0.1)
        d2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / rt**2
        labels[i][(d2 < 1) & brain] = 2
        labels[i][(d2 < 0.5) & brain] = 1
        labels[i][(d2 < 0.25) & brain] = 3
        for c in range(channels):
            noise = 0.05 * rng.standard_normal((size, size), dtype=np.float32)
            img = np.clip(tissue * rng.uniform(0.6, 1.0) + noise, 0, 1)
            images[i, c][brain] = img[brain]
    return images, labels


def timed(fn: Callable[[], int], repeats: int, after: Callable[[], None] | None = None) -> list[float]:
    """samples/s of ``repeats`` runs of ``fn`` (which returns the samples it read); ``after``
    runs untimed after each."""
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - t0))
        if after is not None:
            after()
    return rates


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=320, help="samples (1 MiB of image each)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunk-mib", type=float, default=DEFAULT_CHUNK_BYTES / 2**20)
    parser.add_argument("--shuffle", default=DEFAULT_SHUFFLE)
    parser.add_argument("--cname", default=DEFAULT_CNAME)
    parser.add_argument("--clevel", type=int, default=DEFAULT_CLEVEL)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    channels, size, bs = 4, args.size, args.batch_size
    sample_shape = (channels, size, size)
    chunk = default_chunk_samples(sample_shape, int(args.chunk_mib * 2**20))
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="synthmed-bench-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        with StoreWriter(
            tmp / "store",
            dims=2,
            channels=("t1", "t1ce", "t2", "flair"),
            sample_shape=sample_shape,
            spacing=(1.0, 1.0, 1.0),
            normalisation={"method": "benchmark"},
            provenance={"benchmark": "store_stream"},
            synthetic=True,
            chunk_samples=chunk,
            cname=args.cname,
            clevel=args.clevel,
            shuffle=args.shuffle,
        ) as writer:
            image_mm = np.lib.format.open_memmap(tmp / "image.npy", "w+", np.float32, (args.n, *sample_shape))
            label_mm = np.lib.format.open_memmap(tmp / "label.npy", "w+", np.uint8, (args.n, size, size))
            for start in range(0, args.n, 64):
                m = min(64, args.n - start)
                images, labels = brain_like(rng, m, channels, size)
                rows = [{"case_id": f"case{(start + i) // 100}", "slice": (start + i) % 100, "split": "train",
                         "source": "benchmark"} for i in range(m)]
                writer.append(images, labels, rows)
                image_mm[start : start + m] = images
                label_mm[start : start + m] = labels
            image_mm.flush()
            label_mm.flush()
            del image_mm, label_mm
        build_s = time.perf_counter() - t0
        store = Store.open(tmp / "store")
        store_bytes = sum(f.stat().st_size for f in (tmp / "store").rglob("*") if f.is_file())
        raw_bytes = args.n * (4 * channels + 1) * size * size

        def read_store() -> int:
            n = 0
            for images, labels, _ in store.iter_batches(bs):
                n += len(images)
            return n

        def read_dataset() -> int:
            loader = torch.utils.data.DataLoader(store.dataset(), batch_size=bs, shuffle=False, num_workers=0)
            return sum(len(images) for images, _ in loader)

        def read_npy() -> int:
            image = np.load(tmp / "image.npy", mmap_mode="r")
            label = np.load(tmp / "label.npy", mmap_mode="r")
            n = 0
            for start in range(0, len(image), bs):
                images = np.array(image[start : start + bs])
                np.array(label[start : start + bs])  # read (copied out) like the store's labels
                n += len(images)
            return n

        steps = args.n // bs  # one epoch of training batches
        epoch = {"train": 0, "npy": 0}
        streams = []

        def read_train() -> int:
            # a fresh stream per epoch (its first batch waits for its chunks); closed after
            # the timing, so that its read-ahead thread is idle while the baselines run
            stream = batch_stream(store.dataset(), bs, seed=0, start_step=epoch["train"] * steps)
            epoch["train"] += 1
            n = 0
            for _ in range(steps):
                images, labels = next(stream)
                n += len(images)
            streams[:] = [stream]
            return n

        def read_npy_shuffled() -> int:
            image = np.load(tmp / "image.npy", mmap_mode="r")
            label = np.load(tmp / "label.npy", mmap_mode="r")
            order = np.random.default_rng([0, epoch["npy"]]).permutation(len(image))
            epoch["npy"] += 1
            n = 0
            for step in range(steps):
                idx = np.sort(order[step * bs : (step + 1) * bs])
                images, labels = torch.from_numpy(image[idx]), torch.from_numpy(label[idx])
                n += len(images)
            return n

        for fn in (read_npy, read_store, read_npy_shuffled, read_train):  # warm the page cache
            fn()
        streams[0].close()
        # interleave the repeats so that drifts in machine load hit both alike
        store_rates, npy_rates, train_rates, shuffled_rates = [], [], [], []
        for _ in range(args.repeats):
            npy_rates += timed(read_npy, 1)
            store_rates += timed(read_store, 1)
            shuffled_rates += timed(read_npy_shuffled, 1)
            train_rates += timed(read_train, 1, after=lambda: streams[0].close())
        dataset_rates = timed(read_dataset, max(1, args.repeats // 2))

    npy_med, store_med = statistics.median(npy_rates), statistics.median(store_rates)
    ratio = store_med / npy_med
    train_med, shuffled_med = statistics.median(train_rates), statistics.median(shuffled_rates)
    train_ratio = train_med / shuffled_med
    sample_bytes = (4 * channels + 1) * size * size
    result = {
        "benchmark": "store_stream",
        "store_samples_per_s": round(store_med, 1),
        "npy_mmap_samples_per_s": round(npy_med, 1),
        "ratio": round(ratio, 3),
        "ratio_best": round(max(store_rates) / max(npy_rates), 3),
        "target": TARGET,
        "meets_target": bool(ratio >= TARGET),
        "training_order": {
            "batch_stream_samples_per_s": round(train_med, 1),
            "npy_mmap_shuffled_samples_per_s": round(shuffled_med, 1),
            "ratio": round(train_ratio, 3),
            "ratio_best": round(max(train_rates) / max(shuffled_rates), 3),
            "target": TARGET,
            "meets_target": bool(train_ratio >= TARGET),
            "window_chunks": streams[0].window,
            "peak_pending_batches": streams[0].peak_pending,
            "peak_pending_MiB": round(streams[0].peak_pending * bs * sample_bytes / 2**20, 1),
            "note": "one epoch per repeat: a fresh batch_stream(num_workers=0) (its thread decodes and "
            "assembles the batches; the first batch waits for its chunks), closed after the timing, "
            "against one epoch of the shuffled memory-mapped read",
        },
        "store_dataset_loader_samples_per_s": round(statistics.median(dataset_rates), 1),
        "store_dataset_loader_note": "StoreDataset + DataLoader(num_workers=0), informational: includes "
        "default_collate's torch.stack, which torch's intra-op threads slow down badly on a busy machine",
        "store_MiB_per_s": round(store_med * raw_bytes / args.n / 2**20, 1),
        "compression_ratio": round(store_bytes / raw_bytes, 3),
        "config": {
            "n": args.n, "sample_shape": list(sample_shape), "batch_size": bs, "chunk_samples": chunk,
            "cname": args.cname, "clevel": args.clevel, "shuffle": args.shuffle, "repeats": args.repeats,
            "statistic": "median samples/s over interleaved repeats, warm page cache",
        },
        "build_s": round(build_s, 1),
        "machine": {"python": platform.python_version(), "processor": platform.machine(),
                    "cpus": torch.get_num_threads()},
    }
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
