"""Fidelity memory: peak resident memory of `evaluate fidelity` on a synthetic store and on one 4× larger.

The real store is a phantom dataset (``--cases`` patients) prepared as 2D slices of
``--size`` px; the synthetic stores hold ``--synthetic`` and 4× as many samples, noisy copies of
its training slices. The domain encoder is trained once, before any measurement (a small
``--encoder-steps``: memory does not depend on the weights). Each measurement is a fresh
process running :func:`synthmed.evaluate.evaluate_fidelity` and reporting its peak resident
set (``VmHWM``, which includes the Python/torch runtime); each is repeated ``--repeats``
times, sizes and ways interleaved, and the median is reported. Two ways:

- ``streaming`` (synthmed's): the synthetic store is read batch by batch, each batch embedded
  and only its features kept (:class:`~synthmed.metrics.FeatureBank`);
- ``in_memory`` (the baseline): the same, except that all the synthetic images are read at
  once before they are embedded, as a pipeline that loads a store and then extracts would.

Target: the streaming peak with 4× the synthetic samples <= 1.10 × the peak with 1×.
Writes benchmarks/results/fidelity_memory.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from _common import RESULTS, peak_rss_mib, write_result

from synthmed.data.store import Store, StoreWriter

TARGET = 1.10
FACTOR = 4
WAYS = ("streaming", "in_memory")


class InMemoryStore(Store):
    """A store whose batches come from all the requested samples read at once (the baseline)."""

    def iter_batches(self, batch_size: int, indices: Any = None, *, fast: bool = True
                     ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, np.int64)
        images, labels = self.read(idx)
        for start in range(0, len(idx), batch_size):
            yield images[start : start + batch_size], labels[start : start + batch_size], idx[start : start + batch_size]


def child(way: str, real: str, synthetic: str, encoder_steps: int) -> None:
    """Evaluate the fidelity of ``synthetic`` one way; print its peak RSS and results as JSON."""
    from synthmed.evaluate import evaluate_fidelity
    from synthmed.features import DomainEncoderConfig

    syn = Store.open(synthetic) if way == "streaming" else InMemoryStore.open(synthetic)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = evaluate_fidelity(real, syn, encoder_config=DomainEncoderConfig(steps=encoder_steps), device="cpu",
                                progress=False)
    seconds = time.perf_counter() - t0
    print(json.dumps({"peak_rss_mib": round(peak_rss_mib(), 1), "seconds": round(seconds, 2),
                      "n_synthetic": out["n_synthetic"], "n_real": out["n_real"], "fd": out["fd"],
                      "precision": out["precision"], "recall": out["recall"], "kid_mean": out["kid_mean"]}))


def noisy_copies(real: Store, path: Path, n: int, seed: int) -> Store:
    """A synthetic store of ``n`` random training slices of ``real`` plus Gaussian noise (sd 0.05)."""
    rng = np.random.default_rng(seed)
    train = real.indices("train")
    with StoreWriter(path, dims=2, channels=real.channels, sample_shape=real.sample_shape, spacing=real.spacing,
                     normalisation={}, provenance={"benchmark": "fidelity_memory"}, synthetic=True) as writer:
        for start in range(0, n, 256):
            m = min(256, n - start)
            images, labels = real.read(np.sort(rng.choice(train, m)))
            images = np.clip(images + 0.05 * rng.standard_normal(images.shape, dtype=np.float32), 0, 1)
            rows = [{"case_id": f"s{start + i}", "slice": 0, "split": "train", "source": "synthetic"} for i in range(m)]
            writer.append(images, labels, rows)
    return writer.store


def measure(way: str, real: Path, synthetic: Path, encoder_steps: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", way, str(real), str(synthetic), str(encoder_steps)],
                          check=True, capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--synthetic", type=int, default=1000, help="samples of the smaller synthetic store")
    parser.add_argument("--encoder-steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "fidelity_memory.json")
    args = parser.parse_args()
    if args.child:
        way, real_path, syn_path, steps = args.child
        child(way, real_path, syn_path, int(steps))
        return

    from synthmed.config import PrepareConfig
    from synthmed.data.phantom import write_phantom
    from synthmed.data.prepare import prepare
    from synthmed.features import DomainEncoderConfig, train_domain_encoder

    with tempfile.TemporaryDirectory(prefix="synthmed-bench-fidelity-") as tmp:
        tmp = Path(tmp)
        write_phantom(tmp / "phantom", cases=args.cases, seed=0, shape=(96, 96, 64), progress=False)
        prepare(tmp / "phantom", tmp / "real", PrepareConfig(size=args.size), progress=False)
        real = Store.open(tmp / "real")
        sizes = (args.synthetic, FACTOR * args.synthetic)
        for n in sizes:
            noisy_copies(real, tmp / f"syn{n}", n, seed=n)
        train_domain_encoder(real, config=DomainEncoderConfig(steps=args.encoder_steps), device="cpu", progress=False)
        runs: dict[str, dict[int, list[dict]]] = {way: {n: [] for n in sizes} for way in WAYS}
        for _ in range(args.repeats):  # interleaved, so that load from other processes hits all alike
            for n in sizes:
                for way in WAYS:
                    runs[way][n].append(measure(way, tmp / "real", tmp / f"syn{n}", args.encoder_steps))
        image_mib = {n: round(n * int(np.prod(real.sample_shape)) * 4 / 2**20, 1) for n in sizes}
        n_real, n_test = len(real), len(real.indices("test"))

    def summary(way: str) -> dict:
        peaks = {n: statistics.median(r["peak_rss_mib"] for r in runs[way][n]) for n in sizes}
        ratio = peaks[sizes[1]] / peaks[sizes[0]]
        return {"peak_rss_mib": [round(peaks[n], 1) for n in sizes], "ratio": round(ratio, 3),
                "seconds": [statistics.median(r["seconds"] for r in runs[way][n]) for n in sizes],
                "all_peaks_mib": {str(n): [r["peak_rss_mib"] for r in runs[way][n]] for n in sizes}}

    streaming, in_memory = summary("streaming"), summary("in_memory")
    same = all(r["fd"] == runs["streaming"][n][0]["fd"] and r["precision"] == runs["streaming"][n][0]["precision"]
               for way in WAYS for n in sizes for r in runs[way][n])
    result = {
        "benchmark": "fidelity_memory",
        "what": "peak RSS (VmHWM, median of fresh processes) of evaluate_fidelity, domain features, CPU",
        "synthetic": list(sizes), "synthetic_image_mib": [image_mib[n] for n in sizes],
        "real": {"samples": n_real, "reference_test_samples": n_test, "sample_shape": list(real.sample_shape),
                 "cases": args.cases},
        "streaming": streaming, "in_memory": in_memory,
        "ratio": streaming["ratio"], "target": TARGET, "meets_target": streaming["ratio"] <= TARGET,
        "same_results_both_ways": same,
        "results": {str(n): {k: runs["streaming"][n][0][k] for k in ("fd", "precision", "recall", "kid_mean")}
                    for n in sizes},
        "config": {"encoder_steps": args.encoder_steps, "repeats": args.repeats, "size": args.size},
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
