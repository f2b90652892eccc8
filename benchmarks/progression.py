"""Disease progression on the longitudinal phantom: risk AUROC for fast progressors beside the end-to-end
baseline, predicted follow-up WT Dice against copying the baseline, and the batched-projection speed-up.

The cohort: ``data phantom --longitudinal`` with 60 subjects × 4 visits 12 months apart (seed 0,
2 mm grid ``78 × 120 × 120``, 40 % fast progressors, a quarter of the subjects tumour-free at
baseline: the grade classifier needs grade-0 samples to learn ``grade>=1``; the default baseline
cue of the growth class, ``--cue-strength 0.7``: fast progressors' tumours have a larger,
necrotic core), prepared as one 32 px tumour-centre slice per
visit with 40 % of the subjects in test (split by subject). Then, through the ``synthmed`` commands:

1. a StyleGAN 2 (``laptop`` preset: 32-d latents, <= 32 feature maps, 1,200 steps at batch 16) on
   the train split's visits, and beside it a ``grade`` classifier (ResNet-18, ``laptop``);
2. ``progression fit`` (space ``w``, 300 projection steps: the paper's schedule shortened),
   ``progression evaluate`` at 36 months (k = 3; the end-to-end baseline a ResNet-18 at the
   ``laptop`` preset on the training subjects' baselines) and ``progression predict``;
3. ``benchmarks/projection.py`` (batched vs one-at-a-time projection, its default settings).

Also checked: the ground truth of ``evaluate`` (the masks' grade jump >= 2 between the 32 px
baseline and follow-up slices) against ``longitudinal.csv``'s ``progressor`` label, for every
subject with a visit at the horizon.

Targets (issue): ``risk_auroc`` >= 0.75 with a subject-bootstrap CI excluding 0.5, stated beside
``baseline_auroc``; predicted follow-up WT Dice above copy-the-baseline's on the fast progressors;
batched projection >= 5× the images/s of one at a time.

``--quick`` checks the script in a few minutes (12 subjects × 3 visits on a 48 × 64 × 64 grid,
phantom seed 1, whose 5 test subjects include fast progressors; every step count cut: its numbers
mean nothing). Writes benchmarks/results/progression.json
(``progression-quick.json`` with ``--quick``) and keeps its work under ``--work`` (a second run
reuses what is finished; ``--fresh`` starts again). Expected on a 2-core CPU: 25-40 minutes
(estimated from the quick run's stage times, mostly the StyleGAN's 1,200 steps; not yet measured).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
from _common import RESULTS, synthmed, time_stage, write_result

from synthmed.data.phantom.cue import CUE_STRENGTH

FULL = {"seed": 0, "subjects": 60, "visits": 4, "shape": (78, 120, 120), "cue_strength": CUE_STRENGTH,
        "test_fraction": 0.4, "months": 36.0,
        "gan_steps": None, "classifier_steps": None, "projection_steps": 300, "baseline_preset": "laptop",
        "baseline_steps": None, "n_boot": 1000, "projection": []}
QUICK = {"seed": 1, "subjects": 12, "visits": 3, "shape": (48, 64, 64), "cue_strength": CUE_STRENGTH,
         "test_fraction": 0.4, "months": 24.0,
         "gan_steps": 40, "classifier_steps": 20, "projection_steps": 20, "baseline_preset": "tiny",
         "baseline_steps": 10, "n_boot": 200, "projection": ["--images", "4", "--steps", "10"]}
TARGETS = {"risk_auroc": 0.75, "projection_speedup": 5.0}


def make_cohort(work: Path, s: dict[str, Any]) -> Path:
    """The phantom cohort and its 32 px store (made once under ``work``; one of another cue strength is refused)."""
    store = work / "store"
    if store.exists():
        record = json.loads((work / "phantom" / "phantom.json").read_text())
        made = record.get("cue", {}).get("strength", 0.0)  # cohorts from before the cue have none
        if made != s["cue_strength"]:
            raise SystemExit(f"{work} holds a cohort of cue strength {made}, not {s['cue_strength']}: run with --fresh")
    else:
        synthmed("data", "phantom", str(work / "phantom"), "--longitudinal", "--subjects", str(s["subjects"]),
                 "--visits", str(s["visits"]), "--interval-months", "12", "--shape", *map(str, s["shape"]),
                 "--onset-fraction", "0.25", "--cue-strength", str(s["cue_strength"]), "--seed", str(s["seed"]),
                 "--workers", "2", "--overwrite")
        synthmed("data", "prepare", str(work / "phantom"), str(store), "--size", "32", "--test-fraction",
                 str(s["test_fraction"]), "--workers", "2")
    return store


def train_networks(work: Path, store: Path, s: dict[str, Any]) -> None:
    """The StyleGAN 2 and the grade classifier, side by side in two processes (each resumed if unfinished)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    jobs = []
    for run, args in ((work / "gen", ["generator", "train", str(store), str(work / "gen"), "--model", "stylegan2",
                                      "--preset", "laptop", *(["--steps", str(s["gan_steps"])] if s["gan_steps"] else [])]),
                      (work / "grade", ["classify", "train", str(work / "grade"), "--train", str(store), "--task",
                                        "grade", "--preset", "laptop",
                                        *(["--steps", str(s["classifier_steps"])] if s["classifier_steps"] else [])])):
        resume = ["--resume"] if (run / "run.json").is_file() else []
        jobs.append(subprocess.Popen([sys.executable, "-m", "synthmed", *args, *resume, "--device", "cpu",
                                      "--no-progress"], env=env, stdout=subprocess.DEVNULL))
    for job in jobs:
        if job.wait() != 0:
            raise SystemExit(f"training failed: {job.args}")


def truth_agreement(work: Path, evaluation: dict[str, Any], horizon: float) -> dict[str, Any]:
    """``evaluate``'s fast progressors (masks' grade jump >= 2) against ``longitudinal.csv``'s ``progressor``,
    on every subject of the store with a visit at the horizon (train and test)."""
    from synthmed.data.store import Store
    from synthmed.progression.followup import followup_pairs, pair_grades

    store = Store.open(work / "store")
    csv = pd.read_csv(work / "phantom" / "longitudinal.csv").groupby("subject_id")["progressor"].first()
    out: dict[str, Any] = {}
    for split in ("train", "test"):
        pairs = followup_pairs(store.samples, horizon, split)
        _, _, fast = pair_grades(store, pairs)
        label = csv.loc[pairs.subjects].to_numpy().astype(bool)
        out[split] = {"subjects": int(len(fast)), "agree": int((fast == label).sum()),
                      "fast_by_masks": int(fast.sum()), "fast_by_csv": int(label.sum())}
    table = pd.read_csv(evaluation["files"]["csv"])
    label = csv.loc[table["subject"]].to_numpy().astype(bool)
    out["evaluate_test_agree"] = int((table["fast"].astype(bool).to_numpy() == label).sum())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=None, help="cohort, runs and outputs (kept; default "
                        "benchmarks/results/progression-work, -quick with --quick)")
    parser.add_argument("--quick", action="store_true", help="a tiny cohort and a few steps (checks the script)")
    parser.add_argument("--fresh", action="store_true", help="delete --work first")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    s = QUICK if args.quick else FULL
    suffix = "-quick" if args.quick else ""
    work = args.work or RESULTS / f"progression-work{suffix}"
    out = args.out or RESULTS / f"progression{suffix}.json"
    if args.fresh:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    store = work / "store"
    time_stage(seconds, "cohort", make_cohort, work, s)
    time_stage(seconds, "train_generator_and_grade_classifier", train_networks, work, store, s)
    run = work / "run"
    fit = ["progression", "fit", str(store), str(run), "--generator", str(work / "gen"), "--classifier",
           str(work / "grade"), "--steps", str(s["projection_steps"]), "--device", "cpu", "--no-progress"]
    time_stage(seconds, "fit", synthmed, *fit, *(["--resume"] if (run / "run.json").is_file() else []))
    months = f"{s['months']:g}"
    evaluate = ["progression", "evaluate", str(run), "--test", str(store), "--months", months, "--k", "3",
                "--baseline-preset", s["baseline_preset"], "--n-boot", str(s["n_boot"]), "--device", "cpu",
                "--no-progress", "--overwrite",
                *(["--baseline-steps", str(s["baseline_steps"])] if s["baseline_steps"] else [])]
    time_stage(seconds, "evaluate", synthmed, *evaluate)
    evaluation = json.loads((run / "eval" / f"store-m{months}.json").read_text())
    time_stage(seconds, "predict", synthmed, "progression", "predict", str(run), str(work / "predicted"), "--baseline",
          str(store), "--months", months, "--k", "3", "--device", "cpu", "--no-progress", "--overwrite")
    projection_json = work / "projection.json"
    time_stage(seconds, "projection_benchmark", subprocess.run,
          [sys.executable, str(Path(__file__).parent / "projection.py"), *s["projection"], "--out", str(projection_json)])
    projection = json.loads(projection_json.read_text())
    fast = evaluation["followup"]["fast"]
    risk_ci = evaluation["risk_auroc_ci"]
    result = {
        "benchmark": "progression", "quick": args.quick, "settings": {k: v for k, v in s.items() if k != "projection"},
        "subjects": evaluation["subjects"], "months": evaluation["months"],
        "risk_auroc": evaluation["risk_auroc"], "risk_auroc_ci": risk_ci,
        "baseline_auroc": evaluation["baseline_auroc"], "baseline_auroc_ci": evaluation["baseline_auroc_ci"],
        "growth_auroc": evaluation["growth_auroc"], "growth_auroc_ci": evaluation["growth_auroc_ci"],
        "risk_true_followup_auroc": evaluation["risk_true_followup_auroc"],
        "followup": evaluation["followup"], "wt_spearman": evaluation["wt_spearman"],
        "wt_interval": evaluation["wt_interval"], "projection_psnr": evaluation["projection_psnr"],
        "grade_classifier_accuracy": (evaluation["grade_classifier"] or {}).get("accuracy"),
        "skipped": evaluation["skipped"],
        "truth_vs_longitudinal_csv": truth_agreement(work, evaluation, s["months"]),
        "projection": {k: projection[k] for k in ("batched_images_per_s", "one_at_a_time_images_per_s", "speedup",
                                                  "images", "steps", "max_abs_w_difference")},
        "seconds": seconds,
        "targets": TARGETS,
        "meets": {
            "risk_auroc": evaluation["risk_auroc"] is not None and evaluation["risk_auroc"] >= TARGETS["risk_auroc"],
            "risk_ci_excludes_0.5": risk_ci[0] is not None and (risk_ci[0] > 0.5 or risk_ci[1] < 0.5),
            "fast_wt_dice_beats_copy_baseline": fast["n"] > 0 and fast["predicted"]["wt_dice"] is not None
            and fast["predicted"]["wt_dice"] > fast["copy_baseline"]["wt_dice"],
            "projection_speedup": projection["speedup"] >= TARGETS["projection_speedup"],
        },
        "files": {**evaluation["files"], "predicted_store": str(work / "predicted")},
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    write_result(out, result)


if __name__ == "__main__":
    main()
