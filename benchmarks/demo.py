"""The demo study: wall time, per-stage breakdown, and a rerun of the finished study.

Runs the packaged demo study (``synthmed demo``'s ``examples/demo.yaml``) into a fresh
folder with :func:`synthmed.study.run_study`, then runs it again in the same process (every
stage is finished: the rerun plans, checks, rewrites the results table and finds the report
up to date). Reported: the first run's wall time, each stage's seconds (from its
``done.json``) and their sum per kind, the time of the results table and the report, the
rerun's wall time and its ratio to the first run; the sum of stage seconds over the wall time
(above 1: stages ran side by side in the pool). Also timed, for information: a rerun
through the command line (``synthmed demo OUT`` in a new process: Python start-up and
imports included).

Result targets, on the demo's real test patients (:func:`synthmed.study.answers.study_answers`):
real-only WT Dice >= 0.75; the best generator's synthetic-only relative WT Dice >= 0.6; the
diffusion model's >= 0.5; synthetic+real (all of both stores) WT Dice >= 0.95 x real-only for
the best generator; every generator has a synthetic-only relative Dice and an FD rank.

Targets: the demo within 15 minutes on this 2-core CPU; a rerun <= 5 % of the first run.
Writes benchmarks/results/demo.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from _common import write_result

DEMO_TARGET_S = 15 * 60
RERUN_TARGET = 0.05
REAL_DICE_TARGET = 0.75
BEST_RELATIVE_TARGET = 0.6
DIFFUSION_RELATIVE_TARGET = 0.5
MIXED_TARGET = 0.95


def result_targets(answers: dict) -> dict:
    """The demo's numbers and whether they meet the result targets (see the module)."""
    (dataset, entry), = answers.items()
    real = entry["real_only"]["mean"] or 0.0
    gens = entry["generators"]
    relative = {g: v["relative_synthetic"]["mean"] for g, v in gens.items()}
    mixed = {g: (v["dice_mixed"].get("all") or {}).get("mean") for g, v in gens.items()}
    best = max((g for g in relative if relative[g] is not None), key=lambda g: relative[g], default=None)
    diffusion = relative.get("ddpm")
    best_mixed = max((m for m in mixed.values() if m is not None), default=None)
    return {
        "dataset": dataset, "real_only_wt_dice": real, "relative_wt_dice_synthetic": relative,
        "wt_dice_synthetic_plus_real": mixed, "best_generator": best,
        "fd_rank": {g: v["fd_rank"] for g, v in gens.items()},
        "memorized_share": {g: v["memorized_share"] for g, v in gens.items()},
        "meets": {
            "real_only_wt_dice": real >= REAL_DICE_TARGET,
            "best_relative": best is not None and relative[best] >= BEST_RELATIVE_TARGET,
            "diffusion_relative": diffusion is not None and diffusion >= DIFFUSION_RELATIVE_TARGET,
            "synthetic_plus_real": best_mixed is not None and best_mixed >= MIXED_TARGET * real,
            "every_generator_filled": all(relative[g] is not None and gens[g]["fd_rank"] is not None for g in gens),
        },
    }


def stage_seconds(out: Path) -> list[dict]:
    """``{"stage", "kind", "seconds"}`` of every finished stage, in the order they finished."""
    rows = []
    for done in (out / "stages").glob("*/done.json"):
        record = json.loads(done.read_text())
        rows.append({"stage": done.parent.name, "kind": record["kind"], "seconds": round(record["seconds"], 3),
                     "finished": record["finished"]})
    return sorted(rows, key=lambda r: (r["finished"], r["stage"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reruns", type=int, default=3, help="in-process reruns timed (the median is reported)")
    parser.add_argument("--study", type=Path, default=None,
                        help="report on this finished demo folder instead of running one (no timings)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the study folder here (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "demo.json")
    args = parser.parse_args()

    from synthmed.study import DEMO_SPEC, load_spec, run_study
    from synthmed.study.answers import study_answers

    if args.study is not None:
        write_result(args.out.with_name("demo-results.json"), result_targets(study_answers(args.study)))
        return
    tmp = Path(tempfile.mkdtemp(prefix="synthmed-demo-bench-"))
    study = args.keep or tmp / "demo"
    if study.exists():
        shutil.rmtree(study)
    try:
        spec = load_spec(DEMO_SPEC)
        start = time.perf_counter()
        first = run_study(spec, study, progress=False)
        first_s = time.perf_counter() - start
        stages = stage_seconds(study)
        results = result_targets(study_answers(study))
        reruns = []
        for _ in range(args.reruns):
            start = time.perf_counter()
            again = run_study(spec, study, progress=False)
            reruns.append(time.perf_counter() - start)
            assert again.executed == [], "a rerun of a finished study executed stages"
        rerun_s = sorted(reruns)[len(reruns) // 2]
        start = time.perf_counter()
        subprocess.run([str(Path(sys.executable).with_name("synthmed")), "demo", str(study)], check=True,
                       capture_output=True)
        cli_rerun_s = time.perf_counter() - start
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)

    per_kind: dict[str, float] = defaultdict(float)
    for row in stages:
        per_kind[row["kind"]] += row["seconds"]
    in_stages = sum(per_kind.values())
    ratio = rerun_s / first_s
    write_result(args.out, {
        "benchmark": "demo", "stages": len(first.plan), "executed": len(first.executed),
        "first_run_s": round(first_s, 2),
        "stage_seconds_by_kind": {k: round(v, 2) for k, v in sorted(per_kind.items(), key=lambda kv: -kv[1])},
        "stage_seconds_total": round(in_stages, 2),
        "parallelism": round(in_stages / first_s, 2),  # stages run side by side in the process pool
        "stages_detail": stages,
        "rerun_s": round(rerun_s, 3), "reruns_s": [round(r, 3) for r in reruns],
        "rerun_ratio": round(ratio, 4),
        "cli_rerun_s": round(cli_rerun_s, 2),
        "results": results,
        "targets": {"demo_s": DEMO_TARGET_S, "rerun_ratio": RERUN_TARGET, "real_only_wt_dice": REAL_DICE_TARGET,
                    "best_relative": BEST_RELATIVE_TARGET, "diffusion_relative": DIFFUSION_RELATIVE_TARGET,
                    "synthetic_plus_real_vs_real": MIXED_TARGET},
        "meets_target": {"demo": first_s <= DEMO_TARGET_S, "rerun": ratio <= RERUN_TARGET, **results["meets"]},
    })


if __name__ == "__main__":
    main()
