"""Robust classifiers on the phantom: clean and robust AUROC, saliency in the mask, data-size curve, PGD cost.

The phantom: 24 patients (seed 1, 48×64×64, half of them tumour-free), prepared as 2D axial
slices of 32 px with a quarter of the patients in test (18 train, 6 test). Task ``presence``,
ResNet-18 at the ``laptop`` preset (width 0.25, compact stem, 600 Adam steps at batch 32;
training attack PGD L∞ ε 0.005, α 0.002, 5 steps), seed 0. Trained: ``standard``,
``adversarial`` and ``dual-bn`` on all training patients, and ``standard`` / ``dual-bn`` on
10 % and 25 % of them (the data-size curve), two runs at a time, one thread each.

Measured on the 6 test patients, with the **last** checkpoint of every run (``--checkpoint``;
the paper's best-by-validation-clean-loss rule picked steps 100-200 of 600 here, before the
adversarial runs had become robust: robust AUROC at ε = 0.005 of 0.44 (adversarial) and 0.37
(dual-bn) with it, against 0.60 and 0.55 at the last step, clean AUROC alike):

* clean AUROC of each run (subject-bootstrap 95 % intervals);
* robust AUROC over the paper's ε sweep (L∞ 0 … 0.01, ART PGD, 10 steps of ε/2); ``dual-bn``
  through both routes (clean BN: deployed; adversarial BN: the paper's protocol);
* the share of positive gradient-saliency mass inside the WT mask dilated by 1 voxel, the
  pointing game and the voxel AUROC, on the tumour-bearing test slices, with intervals;
* the robust best-checkpoint rule: ``adversarial`` and ``dual-bn`` (all of their runs) train
  with ``select="robust"`` (the lowest validation BCE on PGD examples), and their full-data runs'
  ``best`` checkpoints are evaluated at ε = 0 and 0.005 beside the last (``robust_rule``);
* the linear CKA between the ``dual-bn`` run's two batch norms, layer by layer (as in Han et
  al.'s analysis; ``synthmed classify cka``): the first, last and mean value of each comparison,
  with the per-layer figure;
* training cost of PGD-5 against standard training: seconds per step of the same network,
  batch and data, 40 steps each, one after the other in this process, one thread (expected
  about K + 1 = 6: each PGD step is a forward and backward pass).

Targets (issue): clean AUROC of ``dual-bn`` within 0.02 of ``standard``; robust AUROC at
ε = 0.005: ``standard`` near chance, ``dual-bn`` and ``adversarial`` well above it; saliency
mass in the mask ``dual-bn`` ≥ ``adversarial`` > ``standard``; the PGD cost ratio.

Writes benchmarks/results/classify.json (and keeps the runs under ``--work``: a second run
finds them finished and only evaluates; ``--fresh`` retrains). About 30 minutes on 2 cores (training
16, evaluation on one thread 14).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from _common import RESULTS, write_result

PRESET = "laptop"
FULL = ("standard", "adversarial", "dual-bn")
CURVE = (0.1, 0.25)
ROBUST_EPS = 0.005
#: modes trained with ``select="robust"``: their ``best`` checkpoint is the robust rule's.
ROBUST_RULE = ("adversarial", "dual-bn")


def make_store(work: Path) -> Path:
    """The phantom store (see the module docstring), made once under ``work``."""
    store = work / "store"
    if not store.exists():
        cli = [sys.executable, "-m", "synthmed", "data"]
        subprocess.run([*cli, "phantom", str(work / "phantom"), "--cases", "24", "--seed", "1", "--shape", "48", "64",
                        "64", "--tumour-free-fraction", "0.5", "--workers", "2"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([*cli, "prepare", str(work / "phantom"), str(store), "--dims", "2", "--size", "32",
                        "--test-fraction", "0.25", "--workers", "2"], check=True, stdout=subprocess.DEVNULL)
    return store


def train_one(args: tuple[str, Path, str, float, int | None]) -> tuple[str, float | None]:
    """Train one run in a worker process (one thread); ``(name, seconds)``, seconds ``None`` for a run
    found under ``--work`` (resumed or already finished: its time is not a training time)."""
    import torch

    from synthmed.classify.api import train_classifier
    from synthmed.training.fabric import FabricOptions

    torch.set_num_threads(1)
    name, store, mode, fraction, steps = args
    run = store.parent / "runs" / name
    existed = run.exists()
    start = time.perf_counter()
    select = "robust" if mode in ROBUST_RULE else None
    train_classifier(run, [store], task="presence", model="resnet18", mode=mode, preset=PRESET,
                     subject_fraction=fraction, train_overrides={"steps": steps, "select": select}, seed=0,
                     fabric=FabricOptions(device="cpu"), resume=existed, progress=False)
    return name, None if existed else time.perf_counter() - start


def step_seconds(store: Path, mode: str, steps: int) -> float:
    """Median seconds per training step of ``mode`` (steps after the first two), one thread, in this process."""
    import statistics

    import torch

    from synthmed.classify.api import config_for, resolve_configs
    from synthmed.classify.task import ClassificationTask
    from synthmed.data.store import Store
    from synthmed.training import FabricOptions, StepContext, StepRandom, batch_stream, make_fabric

    torch.set_num_threads(1)
    config, tc = resolve_configs("presence", "resnet18", mode, PRESET)
    s = Store.open(store)
    config = config_for(config, s)
    fabric = make_fabric(FabricOptions(device="cpu"))
    task = ClassificationTask(config, tc, 0)
    task.setup(fabric)
    stream = batch_stream(s.dataset("train"), tc.batch, seed=0)
    times = []
    for step in range(steps):
        batch = next(stream)
        start = time.perf_counter()
        task.training_step(batch, StepContext(step=step, random=StepRandom(0, step), fabric=fabric))
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


def summary(evals: dict[str, Any], saliency: dict[str, Any], cost: dict[str, float]) -> dict[str, Any]:
    """The targets' numbers from the evaluations (see the module docstring)."""
    def clean(name: str) -> float:
        return evals[name]["clean"]["tumour"]["auroc"]

    def robust(name: str, route: str = "clean") -> float:
        point = next(p for p in evals[name]["robust"]["routes"][route] if abs(p["eps"] - ROBUST_EPS) < 1e-12)
        return point["metrics"]["tumour"]["auroc"]

    mass = {r["mode"]: r["mass_in_mask"] for r in saliency["runs"]}
    mass_ci = {r["mode"]: r["mass_in_mask_ci"] for r in saliency["runs"]}
    gap = clean("dual-bn") - clean("standard")
    return {
        "clean_auroc": {m: clean(m) for m in FULL},
        "clean_auroc_ci": {m: evals[m]["clean"]["tumour"]["auroc_ci"] for m in FULL},
        "dual_bn_minus_standard_clean_auroc": gap,
        "robust_auroc_eps_0.005": {"standard": robust("standard"), "adversarial": robust("adversarial"),
                                   "dual-bn (clean BN, deployed)": robust("dual-bn"),
                                   "dual-bn (adversarial BN, paper's protocol)": robust("dual-bn", "adversarial")},
        "saliency_mass_in_mask": mass, "saliency_mass_in_mask_ci": mass_ci,
        "data_size_curve_clean_auroc": {f"{mode} {share:g}": clean(f"{mode}-{share:g}")
                                        for mode in ("standard", "dual-bn") for share in (*CURVE, 1.0)},
        "pgd_cost_ratio": cost["adversarial"] / cost["standard"],
        "meets": {
            "dual_bn_clean_within_0.02": abs(gap) <= 0.02 or gap > 0,
            "standard_robust_near_chance": robust("standard") <= 0.6,
            "robust_well_above_chance": min(robust("adversarial"), robust("dual-bn")) >= 0.7,
            "saliency_order": mass["dual-bn"] >= mass["adversarial"] > mass["standard"],
        },
    }


def point_aurocs(evaluation: dict[str, Any]) -> dict[str, float]:
    """Clean AUROC and robust AUROC at ε = ``ROBUST_EPS`` through the clean BN of one evaluation."""
    point = next(p for p in evaluation["robust"]["routes"]["clean"] if abs(p["eps"] - ROBUST_EPS) < 1e-12)
    return {"clean_auroc": evaluation["clean"]["tumour"]["auroc"], "robust_auroc": point["metrics"]["tumour"]["auroc"]}


def cka_summary(cka: dict[str, Any]) -> dict[str, Any]:
    """First, last and mean per-layer CKA of each comparison of :func:`compare_branches`'s result
    (layers where CKA is undefined, ``None``, left out of the mean)."""
    out: dict[str, Any] = {"estimator": cka["estimator"], "n": cka["n"], "layers": len(cka["layers"]),
                           "figure": cka["figure"]}
    for key, comparison in cka["comparisons"].items():
        values = [v for v in comparison["cka"] if v is not None]
        out[key] = {"description": comparison["description"], "first": comparison["cka"][0],
                    "last": comparison["cka"][-1], "mean": sum(values) / len(values) if values else None}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=RESULTS / "classify-work", help="store and runs (kept)")
    parser.add_argument("--quick", action="store_true", help="a few steps per run (checks the script)")
    parser.add_argument("--fresh", action="store_true", help="delete --work's runs first")
    parser.add_argument("--checkpoint", default="last", help="checkpoint evaluated: last (default), best or auto")
    parser.add_argument("--out", type=Path, default=RESULTS / "classify.json")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from synthmed.classify.branches import compare_branches
    from synthmed.classify.interpret import explain
    from synthmed.classify.robustness import evaluate_classifier

    args.work.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        shutil.rmtree(args.work / "runs", ignore_errors=True)
    started = time.perf_counter()
    store = make_store(args.work)
    steps = 6 if args.quick else None
    jobs = [(m, store, m, 1.0, steps) for m in FULL]
    jobs += [(f"{m}-{f:g}", store, m, f, steps) for m in ("standard", "dual-bn") for f in CURVE]
    with ProcessPoolExecutor(2) as pool:
        train_seconds = dict(pool.map(train_one, jobs))
    runs = args.work / "runs"
    evals = {}
    for name in [*FULL, *(f"{m}-{f:g}" for m in ("standard", "dual-bn") for f in CURVE)]:
        sweep = None if name in FULL else [0.0]
        evals[name] = evaluate_classifier(runs / name, store, checkpoint=args.checkpoint, eps_sweep=sweep,
                                          attack_steps=10, device="cpu", overwrite=True, progress=False)
    evals.update({f"{m}-1": evals[m] for m in ("standard", "dual-bn")})  # the curve's full-data point
    rule = {}
    for name in ROBUST_RULE:  # the robust rule's best checkpoint beside the last (not written to the run)
        best = evaluate_classifier(runs / name, store, checkpoint="best", eps_sweep=[0.0, ROBUST_EPS], attack_steps=10,
                                   device="cpu", write=False, progress=False)
        rule[name] = {"best_step": best["checkpoint"]["step"], "last_step": evals[name]["checkpoint"]["step"],
                      **{f"{key}_{which}": value for which, result in (("best", best), ("last", evals[name]))
                         for key, value in point_aurocs(result).items()}}
    saliency = explain([runs / m for m in FULL], store, method="gradient", dilation=1, out=args.work / "saliency",
                       checkpoint=args.checkpoint, device="cpu", overwrite=True, progress=False)
    cka = compare_branches(runs / "dual-bn", store, checkpoint=args.checkpoint, device="cpu", overwrite=True,
                           progress=False)
    cost = {m: step_seconds(store, m, 8 if args.quick else 40) for m in ("standard", "adversarial")}
    result = {"preset": PRESET, "task": "presence", "network": "resnet18", "quick": args.quick,
              "checkpoint": args.checkpoint,
              "train_seconds": train_seconds, "seconds_per_step": cost, **summary(evals, saliency, cost),
              "saliency": {"method": "gradient", "dilation": 1, "n": saliency["n"], "gallery": saliency["gallery"],
                           "pointing_game": {r["mode"]: r["pointing_game"] for r in saliency["runs"]},
                           "auroc": {r["mode"]: r["auroc"] for r in saliency["runs"]}},
              "robust_rule": rule, "dual_bn_cka": cka_summary(cka), "wall_seconds": time.perf_counter() - started}
    write_result(args.out, result)


if __name__ == "__main__":
    main()
