"""`data prepare` cost and memory against its baselines, on default-size phantom cases.

- cost: prepare (2D, 128 px, one worker) over K cases vs merely loading the same NIfTI
  files with nibabel as floating-point arrays (`nib.load(f).get_fdata(dtype=np.float32)`),
  same process, best of three interleaved warm runs each; target <= 2x. The ratio against nibabel's raw
  stored integers (`np.asanyarray(img.dataobj)`, no float conversion) is reported too.
- memory: peak resident memory of a `prepare` process at 40 cases vs at 10 cases (the
  first 10 of the same dataset), each in a fresh process; target <= 1.2x.

Writes benchmarks/results/prepare.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from _common import write_result

from synthmed.config import PrepareConfig
from synthmed.data.phantom import write_phantom
from synthmed.data.prepare import prepare

CHILD = """
import resource, sys
from synthmed.config import PrepareConfig
from synthmed.data.prepare import prepare
prepare(sys.argv[1], sys.argv[2], PrepareConfig(size=int(sys.argv[3])), progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def load_only(folder: Path, *, raw: bool = False) -> float:
    start = time.perf_counter()
    for path in sorted(folder.glob("*/*.nii.gz")):
        img = nib.load(path)
        np.asanyarray(img.dataobj) if raw else img.get_fdata(dtype=np.float32)
    return time.perf_counter() - start


def prepare_time(src: Path, store: Path, size: int) -> float:
    start = time.perf_counter()
    prepare(src, store, PrepareConfig(size=size), progress=False, overwrite=True)
    return time.perf_counter() - start


def peak_rss_mib(src: Path, store: Path, size: int) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, str(src), str(store), str(size)],
                         check=True, capture_output=True, text=True).stdout
    return int(out.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cost-cases", type=int, default=6)
    parser.add_argument("--small", type=int, default=10)
    parser.add_argument("--large", type=int, default=40)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "prepare.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "phantom"
        write_phantom(data, cases=args.large, seed=0, workers=2, progress=False)
        ids = sorted(p.name for p in data.iterdir() if p.is_dir())

        def subset(name: str, n: int) -> Path:
            folder = tmp / name
            folder.mkdir()
            for case in ids[:n]:
                (folder / case).symlink_to(data / case)
            return folder

        cost_src, small_src = subset("cost", args.cost_cases), subset("small", args.small)
        load_only(cost_src)  # warm the page cache and the code paths of both measurements
        prepare_time(subset("warm", 1), tmp / "warm-store", args.size)
        rounds = [(load_only(cost_src, raw=True), load_only(cost_src), prepare_time(cost_src, tmp / "cost-store", args.size))
                  for _ in range(args.repeats)]  # interleaved, so drifts in machine load hit all three
        t_raw, t_load, t_prepare = (min(column) for column in zip(*rounds))
        rss_small = peak_rss_mib(small_src, tmp / "small-store", args.size)
        rss_large = peak_rss_mib(data, tmp / "large-store", args.size)
    cost_ratio = t_prepare / t_load
    memory_ratio = rss_large / rss_small
    result = {
        "benchmark": "prepare",
        "shape": [155, 240, 240],
        "size": args.size,
        "cost": {"cases": args.cost_cases, "nibabel_get_fdata_float32_s": round(t_load, 3),
                 "prepare_s": round(t_prepare, 3), "ratio": round(cost_ratio, 3), "target": 2.0,
                 "meets_target": cost_ratio <= 2.0, "nibabel_raw_dataobj_s": round(t_raw, 3),
                 "ratio_to_raw_dataobj": round(t_prepare / t_raw, 3)},
        "memory": {"cases": [args.small, args.large], "peak_rss_mib": [round(rss_small, 1), round(rss_large, 1)],
                   "ratio": round(memory_ratio, 3), "target": 1.2, "meets_target": memory_ratio <= 1.2},
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
