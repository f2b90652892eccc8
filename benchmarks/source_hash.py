"""Stages keyed by content: the cost of the dataset content hash, and of rerunning a finished study.

Targets, measured in the same process:

1. The content hash of a BraTS-size dataset (``source_hash``: every file's bytes, SHA-256,
   no cache — a study's first plan) costs <= 5 % of ``prepare`` on the same dataset (2D,
   128 px, one worker). Generating 100 full-size phantom cases (155×240×240) takes long, so
   both are measured on ``--cases`` cases (default 4) and, both being linear in the cases,
   the ratio holds for 100; the times are also given per case and extrapolated to 100. The
   cached hash of a rerun (file metadata only) is reported too.
2. A rerun of a finished study (everything done: plan with the cached hash, skip every stage,
   results table and report checked) takes <= 5 % of its first run. The study is small (a
   6-case phantom dataset on disk read through ``data.path``, tiny DDPM, tiny U-Net on real and
   synthetic data, fidelity, memorization) so that the first run takes a minute on a CPU.

Run ``python benchmarks/source_hash.py``; writes ``benchmarks/results/source_hash.json``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _common import RESULTS, write_result

from synthmed.config import PrepareConfig
from synthmed.data.fingerprint import source_hash
from synthmed.data.phantom import write_phantom
from synthmed.data.prepare import prepare

TARGET = 0.05


def hash_part(tmp: Path, cases: int, repeats: int) -> dict:
    data = tmp / "brats"
    write_phantom(data, cases=cases, seed=0, progress=False)  # 155×240×240, like BraTS
    size = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
    cold, warm, prep = [], [], []
    for r in range(repeats):  # interleaved
        t0 = time.perf_counter()
        source_hash(data)
        cold.append(time.perf_counter() - t0)
        cache = tmp / f"cache{r}.json"
        source_hash(data, cache=cache)
        t0 = time.perf_counter()
        source_hash(data, cache=cache)
        warm.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        prepare(data, tmp / f"store{r}", PrepareConfig(size=128), progress=False)
        prep.append(time.perf_counter() - t0)
    cold_s, warm_s, prep_s = (statistics.median(x) for x in (cold, warm, prep))
    ratio = cold_s / prep_s
    return {"cases": cases, "dataset_mb": round(size / 1e6, 1), "hash_s": round(cold_s, 3),
            "hash_cached_s": round(warm_s, 4), "prepare_s": round(prep_s, 2), "ratio": round(ratio, 4),
            "target": TARGET, "meets_target": bool(ratio <= TARGET),
            "per_case": {"hash_s": round(cold_s / cases, 4), "prepare_s": round(prep_s / cases, 3)},
            "extrapolated_100_cases": {"hash_s": round(cold_s / cases * 100, 1), "prepare_s": round(prep_s / cases * 100, 1),
                                       "hash_cached_s": round(warm_s / cases * 100, 3)},
            "how": "phantom cases at 155×240×240 (BraTS size); hash without cache (first plan) vs prepare "
                   "--dims 2 --size 128 --workers 1; median of repeats, interleaved; both linear in the cases"}


def rerun_part(tmp: Path) -> dict:
    from synthmed.study import build_spec, run_study

    data = tmp / "small"
    write_phantom(data, cases=6, seed=0, shape=(48, 64, 64), progress=False)
    spec = build_spec({"name": "bench", "data": {"path": str(data), "size": 32, "test_fraction": 0.34},
                       "generators": [{"name": "ddpm", "steps": 10, "sample_steps": 5}], "samples": 16,
                       "segmenters": [{"name": "unet", "steps": 5}], "train_sets": ["real", "synthetic"],
                       "augmentation": [False], "fidelity": ["domain"], "encoder_steps": 10, "device": "cpu"})
    out = tmp / "study"
    t0 = time.perf_counter()
    first = run_study(spec, out, progress=False)
    first_s = time.perf_counter() - t0
    reruns = []
    for _ in range(3):
        t0 = time.perf_counter()
        again = run_study(spec, out, progress=False)
        reruns.append(time.perf_counter() - t0)
        assert not again.executed
    rerun_s = statistics.median(reruns)
    ratio = rerun_s / first_s
    return {"stages": len(first.plan), "first_run_s": round(first_s, 2), "rerun_s": round(rerun_s, 3),
            "ratio": round(ratio, 4), "target": TARGET, "meets_target": bool(ratio <= TARGET),
            "how": "run_study in this process (imports excluded); rerun = median of 3, nothing to execute"}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "source_hash.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="synthmed-bench-hash-") as tmp:
        hashing = hash_part(Path(tmp), args.cases, args.repeats)
        rerun = rerun_part(Path(tmp))
    result = {"benchmark": "source_hash", "hash": hashing, "rerun": rerun,
              "ratio": hashing["ratio"], "target": TARGET,
              "meets_target": bool(hashing["meets_target"] and rerun["meets_target"])}
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
