"""Phantom speed: seconds to synthesise and write one default-size case (155×240×240, 1 mm).

One process, as ``synthmed data phantom --workers 1`` runs it (the phantom runs torch on one
thread): the MNI152 template is loaded once (reported separately as
``template_setup_seconds``, after ``import_seconds`` for importing the module), one
warm-up case is made, then ``--cases`` cases are each synthesised with ``phantom_case`` and
written as five ``.nii.gz`` files (four int16 images and the seg) with ``write_brats_case``,
the same per-case work ``write_phantom`` does. ``seconds_per_case`` is the mean wall time of
those cases; the split between synthesis and writing, the best case and the process CPU
time are reported too (CPU time resists load from other processes, wall time does not).
Target: <= 3.0 s per case. Writes benchmarks/results/phantom.json and prints it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _common import write_result

TARGET = 3.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=3, help="timed cases after the warm-up (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "phantom.json")
    args = parser.parse_args()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

    start = time.perf_counter()
    from synthmed.data import phantom
    from synthmed.data.layouts.brats import write_brats_case
    from synthmed.data.phantom.template import mni_template

    imported = time.perf_counter()
    mni_template()
    setup = time.perf_counter() - imported
    import_seconds = imported - start

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_brats_case(phantom.phantom_case(10_000, seed=args.seed), tmp)  # warm-up, not timed
        warmup = time.perf_counter() - start
        synth, write, total, cpu = [], [], [], []
        for index in range(args.cases):
            cpu0, t0 = time.process_time(), time.perf_counter()
            case = phantom.phantom_case(index, seed=args.seed)
            t1 = time.perf_counter()
            write_brats_case(case, tmp)
            t2 = time.perf_counter()
            synth.append(t1 - t0)
            write.append(t2 - t1)
            total.append(t2 - t0)
            cpu.append(time.process_time() - cpu0)

    mean = statistics.fmean(total)
    result = {
        "benchmark": "phantom",
        "shape": list(phantom.DEFAULT_SHAPE),
        "cases": args.cases,
        "seconds_per_case": round(mean, 3),
        "best_seconds_per_case": round(min(total), 3),
        "synthesis_seconds": round(statistics.fmean(synth), 3),
        "write_seconds": round(statistics.fmean(write), 3),
        "cpu_seconds_per_case": round(statistics.fmean(cpu), 3),
        "per_case_seconds": [round(t, 3) for t in total],
        "import_seconds": round(import_seconds, 3),
        "template_setup_seconds": round(setup, 3),
        "warmup_case_seconds": round(warmup, 3),
        "target_seconds": TARGET,
        "meets_target": mean <= TARGET,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_before": None if load_before is None else round(load_before, 2),
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
