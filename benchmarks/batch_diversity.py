"""Batch diversity: distinct patients per training batch, as a share of a uniform draw's.

Target: the batches of ``synthmed.training.batch_stream`` hold on average at least 90 % of
the distinct cases that ``B`` samples drawn uniformly without replacement from the same
training split hold (the exact hypergeometric expectation: the sum over cases of
``1 - P(none of the case's samples)``), measured on a 64 px phantom store with 12 training
cases, batch 16. The chunk-by-chunk order (``window=1``, the order before batches mixed
chunks) is measured alongside as the baseline.

Also reported, on the order alone (no pixel data; the same sampler ``batch_stream`` reads
by): large case-ordered layouts like a prepared BraTS 2021 (1,000 training cases × 100
slices) at 128 px (32 samples per 8 MiB chunk, batch 16) and 256 px (8 per chunk, batch
32), with the mixing window and its memory.

Run ``python benchmarks/batch_diversity.py``; writes ``benchmarks/results/batch_diversity.json``.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import write_result
from scipy.stats import hypergeom

from synthmed.config import PrepareConfig
from synthmed.data.phantom import write_phantom
from synthmed.data.prepare import prepare
from synthmed.data.store import Store, default_chunk_samples
from synthmed.training import batch_stream
from synthmed.training.data import StepBatchSampler

TARGET = 0.9
RESULTS = Path(__file__).resolve().parent / "results" / "batch_diversity.json"


def uniform_distinct(case_of_item: np.ndarray, batch: int) -> float:
    """Expected distinct cases among ``batch`` items drawn uniformly without replacement."""
    counts = np.bincount(case_of_item)
    n = int(counts.sum())
    return float(sum(1 - hypergeom(n, int(m), batch).pmf(0) for m in counts if m))


def distinct_per_batch(case_of_item: np.ndarray, positions: list[np.ndarray]) -> np.ndarray:
    return np.array([len(np.unique(case_of_item[p])) for p in positions])


def summary(case_of_item: np.ndarray, batch: int, positions: list[np.ndarray]) -> dict:
    d = distinct_per_batch(case_of_item, positions)
    u = uniform_distinct(case_of_item, batch)
    return {"mean_distinct_cases": round(float(d.mean()), 2), "min_distinct_cases": int(d.min()),
            "uniform_expectation": round(u, 2), "ratio": round(float(d.mean()) / u, 3)}


class _Layout:
    """A case-ordered dataset's chunk layout, without data: what the order depends on."""

    def __init__(self, cases: int, slices: int, chunk: int, item_nbytes: int):
        self.case_of_item = np.repeat(np.arange(cases), slices)
        self.chunk_ids = np.arange(cases * slices) // chunk
        self.item_nbytes = item_nbytes

    def __len__(self) -> int:
        return len(self.chunk_ids)


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=15, help="phantom cases (20 %% become test cases)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    bs = args.batch_size
    with tempfile.TemporaryDirectory(prefix="synthmed-bench-") as tmp:
        t0 = time.perf_counter()
        write_phantom(Path(tmp) / "phantom", cases=args.cases, seed=0, progress=False)
        prepare(Path(tmp) / "phantom", Path(tmp) / "store", PrepareConfig(size=args.size), progress=False)
        build_s = time.perf_counter() - t0
        store = Store.open(Path(tmp) / "store")
        train = store.dataset(split="train")
        _, case_codes = np.unique(store.samples["case_id"].to_numpy(), return_inverse=True)
        case_of_item = case_codes[train.indices]
        steps = args.epochs * len(train) // bs

        stream = batch_stream(train, bs, seed=0)
        t0 = time.perf_counter()
        batches = [next(stream) for _ in range(steps)]
        stream_s = time.perf_counter() - t0
        after = [np.asarray(stream.sampler.positions(s)) for s in range(steps)]
        want, _ = store.read(train.indices[after[-1]])  # the stream delivers its sampler's order
        assert torch.equal(batches[-1][0], torch.from_numpy(want))
        before_sampler = StepBatchSampler(train, bs, seed=0, window=1)
        before = [np.asarray(before_sampler.positions(s)) for s in range(steps)]
        phantom = {
            "store": {"size": args.size, "training_cases": int(len(np.unique(case_of_item))),
                      "training_samples": len(train), "chunk_samples": store.chunk_samples,
                      "chunks": int(len(np.unique(train.chunk_ids)))},
            "batch_size": bs, "steps": steps, "window_chunks": stream.window,
            "after": summary(case_of_item, bs, after),
            "before_chunk_by_chunk": summary(case_of_item, bs, before),
            "stream_samples_per_s": round(steps * bs / stream_s, 1),
        }

    layouts = []
    for size, batch in ((128, 16), (256, 32)):
        sample_bytes = (4 * 4 + 1) * size * size
        chunk = default_chunk_samples((4, size, size))
        layout = _Layout(1000, 100, chunk, sample_bytes)
        sampler = StepBatchSampler(layout, batch, seed=0)  # type: ignore[arg-type]
        positions = [np.asarray(sampler.positions(s)) for s in range(2000)]
        layouts.append({"layout": f"1000 cases x 100 slices, {size} px, {chunk} samples per chunk",
                        "batch_size": batch, "window_chunks": sampler.window,
                        "window_MiB": round(sampler.window * chunk * sample_bytes / 2**20, 1),
                        **summary(layout.case_of_item, batch, positions)})

    ratio = phantom["after"]["ratio"]
    result = {
        "benchmark": "batch_diversity",
        "ratio": ratio,
        "target": TARGET,
        "meets_target": bool(ratio >= TARGET),
        "phantom": phantom,
        "large_layouts_order_only": layouts,
        "build_s": round(build_s, 1),
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
    }
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
