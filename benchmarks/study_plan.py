"""Study planning speed: seconds to expand a spec of about 1,000 stages into its DAG.

The spec: 4 generators × (2 segmenters × (real + 4 synthetic + 4×4 mixed at 4 real fractions)
× 2 augmentation settings × 6 seeds) → 1,026 stages (each train stage with its evaluation).
Timed: validating the spec dict and :func:`synthmed.study.make_plan` (hashing every stage),
then the status of every stage against an empty study folder; best and median of
``--repeats``. Target: planning 1,000 stages in < 1 s. Writes benchmarks/results/study_plan.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _common import write_result

TARGET_S = 1.0

SPEC = {
    "name": "bench",
    "data": {"phantom": {"cases": 10}, "size": 64},
    "generators": [{"name": n, "steps": 100} for n in ("ddpm", "progan", "stylegan2", "stylegan3")],
    "segmenters": [{"name": "unet"}, {"name": "swin"}],
    "train_sets": ["real", "synthetic", "synthetic+real"],
    "augmentation": [True, False],
    "seeds": list(range(6)),
    "real_fractions": [0.0, 0.25, 0.5, 0.75],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "study_plan.json")
    args = parser.parse_args()
    from synthmed.study import build_spec, make_plan

    make_plan(build_spec(SPEC))  # warm-up: imports, the generator registry
    plan_times, status_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            start = time.perf_counter()
            plan = make_plan(build_spec(SPEC))
            plan_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            plan.status(tmp)
            status_times.append(time.perf_counter() - start)
    seconds = statistics.median(plan_times)
    write_result(args.out, {
        "benchmark": "study_plan", "stages": len(plan),
        "plan_seconds_median": round(seconds, 4), "plan_seconds_best": round(min(plan_times), 4),
        "status_seconds_median": round(statistics.median(status_times), 4),
        "per_1000_stages_seconds": round(seconds * 1000 / len(plan), 4),
        "target": f"< {TARGET_S} s for 1,000 stages", "meets_target": seconds * 1000 / len(plan) < TARGET_S,
    })


if __name__ == "__main__":
    main()
