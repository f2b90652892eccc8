"""``classify eval``: clean and robust metrics of a classifier on a store's test subjects, with subject CIs.

**Clean**: per label AUROC, accuracy and balanced accuracy (threshold 0.5 on the sigmoid;
:mod:`synthmed.metrics.classification`) of the test split, each with a percentile bootstrap
interval over test *subjects* (the store's ``subject_id``: a longitudinal subject's visits are
resampled together; a cross-sectional store's case ids), and their macro mean.

**Robust**: the same metrics on adversarial examples of every test sample, across an ε sweep
(default the paper's ``linspace(0, 0.01, 21)`` for L∞; ``linspace(0, 1, 21)`` for L2, whose
radius is over all C×spatial values — an L∞ ε of 0.01 reaches up to 0.64 in L2 on a
4×32×32 slice). The attack is the adversarial-robustness-toolbox's PGD
(:func:`synthmed.classify.attacks.library_pgd`), untargeted against the true labels, step
``ε / 2`` (the paper's 0.0025 at 0.005), ``attack_steps`` steps, random start, seeded.

**Routing.** A deployed model does not know which inputs are adversarial, so the headline route
is ``clean``: every input, attacked or not, goes through the clean batch norm (the only route of
a single-BN model). For a ``dual-bn`` model the paper's protocol is reported too, as route
``adversarial``: the examples are crafted *and* classified through the adversarial BN — which
assumes the model is told that its input is adversarial. The two are labelled everywhere.

Files (with ``write``): ``RUN/eval/<store>.json`` (the result), ``<store>.csv`` (one row per
route × ε × label) and ``<store>_eps.png`` (macro AUROC against ε per route, with its band).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from synthmed.atomic import atomic_file
from synthmed.classify.api import load_classifier
from synthmed.classify.attacks import AttackSpec, library_pgd
from synthmed.classify.dual_bn import bn_route
from synthmed.classify.samples import eval_samples, predict
from synthmed.classify.targets import label_names
from synthmed.errors import SynthmedError
from synthmed.figures import pyplot, save_png
from synthmed.metrics.classification import accuracy, auroc, balanced_accuracy, bootstrap_ci, classification_metrics
from synthmed.outputs import CSV_FILE, JSON_FILE, PNG_FILE, OutputKind, guard_output
from synthmed.progress import progress_bar

METRICS = {"auroc": auroc, "accuracy": accuracy, "balanced_accuracy": balanced_accuracy}


def default_eps_sweep(norm: str) -> tuple[float, ...]:
    """The ε values of the robust sweep: ``linspace(0, 0.01, 21)`` (L∞, the paper's) or ``linspace(0, 1, 21)`` (L2)."""
    top = 0.01 if norm == "linf" else 1.0
    return tuple(float(e) for e in np.linspace(0.0, top, 21))


def eval_files(run_dir: str | Path, test_store: str | Path) -> dict[Path, OutputKind]:
    """The files :func:`evaluate_classifier` writes: ``RUN/eval/<store>.json``, ``.csv`` and ``_eps.png``."""
    base = Path(run_dir) / "eval"
    name = Path(test_store).name
    return {base / f"{name}.json": JSON_FILE, base / f"{name}.csv": CSV_FILE, base / f"{name}_eps.png": PNG_FILE}


def scored(probs: np.ndarray, targets: np.ndarray, subjects: np.ndarray, names: Sequence[str], *,
           n_boot: int, seed: int) -> dict[str, dict[str, float]]:
    """Per-label metrics with ``<metric>_ci`` bootstrap intervals over subjects, and their macro ``mean``."""
    result = classification_metrics(probs, targets, names)
    for k, name in enumerate(names):
        for metric, fn in METRICS.items():
            lo, hi = bootstrap_ci(probs[:, k], targets[:, k], subjects, fn, n_boot=n_boot, seed=seed)
            result[name][f"{metric}_ci"] = [lo, hi]
    return result


def evaluate_classifier(
    run_dir: str | Path,
    test_store: str | Path,
    *,
    checkpoint: str = "auto",
    eps_sweep: Sequence[float] | None = None,
    norm: str = "linf",
    attack_steps: int = 10,
    n_boot: int = 1000,
    seed: int = 0,
    device: str = "auto",
    batch: int = 64,
    write: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Clean and robust metrics of a classifier run on the test split of ``test_store`` (see the module docstring).

    Returns (and with ``write`` saves, see :func:`eval_files`)::

        {"run", "test_store", "checkpoint": {"name", "step"}, "task", "network", "mode", "labels",
         "n", "subjects", "seed", "model", "training", "train_set",
         "clean": {label: {"auroc", "auroc_ci", "accuracy", …, "positives", "n"}, "mean": {…}},
         "robust": {"attack": {"library", "method", "norm", "steps", "step_size", "random_start"},
                    "routes": {"clean": [{"eps", "metrics": {label: {…}, "mean": {…}}}, …],
                               "adversarial": […]  (dual-bn only: the paper's protocol)}}}

    Raises:
        SynthmedError: a missing or unfinished run, a store that does not fit it, bad sweep
            values; with ``write``, see :func:`~synthmed.outputs.guard_output` (checked first).
    """
    run_dir = Path(run_dir)
    if norm not in ("linf", "l2"):
        raise SynthmedError(f"--norm must be linf or l2, got {norm!r}")
    sweep = tuple(float(e) for e in (default_eps_sweep(norm) if eps_sweep is None else eps_sweep))
    if not sweep or any(e < 0 or not np.isfinite(e) for e in sweep):
        raise SynthmedError(f"--eps-sweep must be finite values >= 0, got {list(sweep)}")
    if attack_steps < 1:
        raise SynthmedError(f"--attack-steps must be >= 1, got {attack_steps}")
    if write:
        for name, kind in eval_files(run_dir, test_store).items():
            guard_output(name, [test_store], kind=kind, overwrite=overwrite)
    net, config, info, ckpt = load_classifier(run_dir, checkpoint=checkpoint, device=device)
    test = eval_samples(test_store, config)
    names = label_names(config.task)
    targets = test.targets.numpy()
    routes = ("clean", "adversarial") if config.dual_bn else ("clean",)
    with bn_route("clean"):
        clean = scored(predict(net, test.images, batch=batch), targets, test.subjects, names, n_boot=n_boot, seed=seed)
    robust: dict[str, list[dict[str, Any]]] = {}
    with progress_bar(enabled=progress) as bar:
        job = bar.add_task("robust ε sweep", total=len(routes) * len(sweep))
        for route in routes:
            robust[route] = []
            with bn_route(route):
                for eps in sweep:
                    spec = AttackSpec(eps=eps, alpha=max(eps / 2, 1e-12), steps=attack_steps, norm=norm,
                                      random_start=True)
                    x = test.images if eps == 0 else \
                        library_pgd(net, test.images, test.targets, spec, seed=seed, batch_size=batch)
                    metrics = scored(predict(net, x, batch=batch), targets, test.subjects, names, n_boot=n_boot,
                                     seed=seed)
                    robust[route].append({"eps": eps, "metrics": metrics})
                    bar.advance(job)
    result = {"run": str(run_dir.resolve()), "test_store": str(test.store.path.resolve()), "checkpoint": ckpt,
              "task": config.task, "network": config.network, "mode": config.mode, "labels": list(names),
              "n": int(len(test.images)), "subjects": test.n_subjects, "seed": int(info["seed"]),
              "model": info["model"], "training": info["training"], "train_set": info.get("data", {}),
              "clean": clean,
              "robust": {"attack": {"library": "adversarial-robustness-toolbox", "method": "PGD", "norm": norm,
                                    "steps": attack_steps, "step_size": "eps / 2", "random_start": True,
                                    "routes": {"clean": "every input through the clean BN (deployed)",
                                               "adversarial": "crafted and classified through the adversarial BN "
                                                              "(the paper's protocol; dual-bn only)"}},
                         "routes": robust}}
    if write:
        json_file, csv_file, png_file = eval_files(run_dir, test_store)
        with atomic_file(json_file) as tmp:
            tmp.write_text(json.dumps(result, indent=2) + "\n")
        with atomic_file(csv_file) as tmp:
            tmp.write_text(robust_csv(result))
        eps_figure(result, png_file)
    return result


def robust_csv(result: Mapping[str, Any]) -> str:
    """One row per route × ε × label (and ``mean``): route, eps, label, each metric and its CI bounds."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = [c for m in METRICS for c in (m, f"{m}_lo", f"{m}_hi")]
    writer.writerow(["route", "eps", "label", *columns])
    for route, points in result["robust"]["routes"].items():
        for point in points:
            for label in result["labels"]:
                m = point["metrics"][label]
                values = [v for metric in METRICS for v in (m[metric], *m[f"{metric}_ci"])]
                writer.writerow([route, f"{point['eps']:.6g}", label, *(f"{v:.6g}" for v in values)])
    return buffer.getvalue()


def eps_figure(result: Mapping[str, Any], path: str | Path) -> Path:
    """Macro-mean AUROC against ε, one line per route, with the mean of the labels' CI bounds as a band."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for route, points in result["robust"]["routes"].items():
        eps = [p["eps"] for p in points]
        mean = [p["metrics"]["mean"]["auroc"] for p in points]
        lo = [np.nanmean([p["metrics"][n]["auroc_ci"][0] for n in result["labels"]]) for p in points]
        hi = [np.nanmean([p["metrics"][n]["auroc_ci"][1] for n in result["labels"]]) for p in points]
        label = "clean BN (deployed)" if route == "clean" else "adversarial BN (paper's protocol)"
        ax.plot(eps, mean, marker="o", ms=3, label=label)
        ax.fill_between(eps, lo, hi, alpha=0.2)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel(f"ε ({result['robust']['attack']['norm']})")
    ax.set_ylabel("AUROC (macro mean)")
    ax.set_ylim(0, 1)
    ax.set_title(f"{result['network']} {result['mode']}, {result['task']}: {result['n']} test samples", fontsize=9)
    ax.legend(fontsize=8)
    return save_png(fig, path)
