"""``synthmed progression evaluate``: risk and predicted follow-ups scored on a store's test subjects.

For a horizon of ``M`` months (default :func:`~synthmed.progression.followup.default_horizon` of
the test split), the test subjects are those with a follow-up at ``M``
(:func:`~synthmed.progression.followup.followup_pairs`); each subject is one row, so every
interval is a percentile bootstrap over subjects (:func:`synthmed.metrics.classification.bootstrap_ci`,
``n_boot`` resamples, seeded). The ground truth ``fast`` is the masks' grade jump of at least 2
(:func:`~synthmed.progression.followup.pair_grades`).

Scores of fast progression, each with its AUROC (midranks; ``None`` with one class, the reason in
``skipped``) and interval:

* ``risk`` (:func:`~synthmed.progression.risk.progression_risk`): the grade classifier's class
  probabilities on the real baseline image and on the predicted follow-up image;
* ``risk_true_followup``: the same with the *true* follow-up image (what the risk reaches with a
  perfect image prediction: an upper reference, not a prediction);
* ``growth``: the predicted WT growth read from the generated masks
  (:attr:`~synthmed.progression.predict.Prediction.growth`, no classifier needed);
* ``baseline``: the end-to-end classifier on the baseline image (:mod:`~synthmed.progression.baseline`).

Predicted follow-ups against the true ones, beside the **copy-the-baseline** predictor (the
baseline image and mask as the prediction), on all test subjects and on the fast progressors:
image MAE and PSNR (dB; ``10·log10(1 / MSE)`` over channels and pixels of images in [0, 1], MSE
floored at 1e-10), and WT Dice (both empty: 1); means over subjects. Spearman's ρ of the predicted
and the true follow-up WT fractions (and of the baseline's, for the copy predictor; ``None`` below
3 subjects or for a constant input). The predicted WT interval (min–max over the ``k``
per-neighbour predictions) is scored by its coverage of the true WT fraction and its mean width.

Files (with ``write``; default folder ``RUN/eval/``): ``<store>-m<M>.json`` (the result),
``<store>-m<M>.csv`` (one row per test subject) and ``<store>-m<M>_gallery.png`` (baseline |
predicted | true follow-up, :mod:`~synthmed.progression.gallery`).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from synthmed.atomic import atomic_file
from synthmed.data.store import Store
from synthmed.errors import SynthmedError
from synthmed.metrics.classification import auroc, bootstrap_ci
from synthmed.metrics.overlap import dice
from synthmed.outputs import CSV_FILE, JSON_FILE, PNG_FILE, OutputKind, guard_output
from synthmed.progression.api import BASELINES_DIR, EVAL_DIR, ProgressionRun
from synthmed.progression.followup import check_one_sample_per_visit, default_horizon, followup_pairs, pair_grades
from synthmed.progression.predict import predict_followups, wt_fraction
from synthmed.progression.risk import MIN_JUMP, grade_probabilities, progression_risk

#: MSE floor of the PSNR (an exact match scores 100 dB).
MSE_FLOOR = 1e-10

__all__ = ["eval_files", "evaluate_progression"]


def eval_files(folder: str | Path, test_store: str | Path, horizon: float) -> dict[Path, OutputKind]:
    """The files :func:`evaluate_progression` writes into ``folder``: ``<store>-m<M>.json``, ``.csv`` and
    ``_gallery.png``."""
    base = Path(folder) / f"{Path(test_store).name}-m{horizon:g}"
    return {base.with_suffix(".json"): JSON_FILE, base.with_suffix(".csv"): CSV_FILE,
            base.with_name(base.name + "_gallery.png"): PNG_FILE}


def _number(value: float) -> float | None:
    """``value`` as a float, ``None`` for NaN (JSON has no NaN)."""
    value = float(value)
    return None if math.isnan(value) else value


def _mae(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.float64) - b).reshape(len(a), -1).mean(axis=1)


def _psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    mse = np.square(a.astype(np.float64) - b).reshape(len(a), -1).mean(axis=1)
    return 10 * np.log10(1 / np.maximum(mse, MSE_FLOOR))


def _dice(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    return np.array([dice(p > 0, t > 0) for p, t in zip(pred, true)], np.float64)


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's ρ (average ranks for ties); ``None`` below 3 pairs or for a constant input."""
    from scipy.stats import spearmanr

    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _number(spearmanr(x, y)[0])


def _score(scores: np.ndarray, fast: np.ndarray, subjects: np.ndarray, *, n_boot: int, seed: int) -> dict[str, Any]:
    """``{"auroc", "auroc_ci"}`` of ``scores`` for ``fast``, the interval a subject bootstrap."""
    value = auroc(scores, fast)
    low, high = bootstrap_ci(scores, fast, subjects, auroc, n_boot=n_boot, seed=seed)
    return {"auroc": _number(value), "auroc_ci": [_number(low), _number(high)]}


def _group(rows: pd.DataFrame) -> dict[str, Any]:
    """Means over the subjects of ``rows`` of each predictor's MAE, PSNR and WT Dice."""
    out: dict[str, Any] = {"n": int(len(rows))}
    for who in ("predicted", "copy_baseline"):
        out[who] = {m: _number(rows[f"{m}_{who}"].mean()) for m in ("mae", "psnr", "wt_dice")}
    return out


def _classifier_probabilities(classifier: Path, store: Store, images: Sequence[np.ndarray], device: str
                              ) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Class probabilities ``[N, G]`` of the grade classifier on each image set, and its description."""
    from synthmed.classify.api import load_classifier
    from synthmed.classify.dual_bn import bn_route
    from synthmed.classify.samples import check_fits, predict

    net, config, _, ckpt = load_classifier(classifier, device=device)
    if config.task != "grade":
        raise SynthmedError(f"{classifier}: a {config.task} classifier; the risk needs a grade classifier")
    check_fits(store, config)
    with bn_route("clean"):
        probs = [grade_probabilities(predict(net, torch.from_numpy(np.ascontiguousarray(x)))) for x in images]
    return probs, {"run": str(Path(classifier).resolve()), "network": config.network, "mode": config.mode,
                   "checkpoint": ckpt}


def evaluate_progression(
    run: str | Path,
    test_store: str | Path,
    *,
    months: float | None = None,
    k: int = 3,
    metric: str = "cosine",
    weighting: str = "inverse",
    mode: str = "endpoints",
    classifier: str | Path | None = None,
    baseline: bool = True,
    baseline_network: str = "resnet18",
    baseline_preset: str = "tiny",
    baseline_steps: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    gallery_subjects: int = 8,
    out: str | Path | None = None,
    device: str = "auto",
    write: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Score the run's risk and predicted follow-ups on the test split of ``test_store`` (the module docstring).

    Args:
        run: a finished progression run.
        test_store: a longitudinal store whose ``test`` split holds the test subjects.
        months: the horizon (default: the test split's, see the module docstring).
        k, metric, weighting, mode: the extrapolation's (:func:`~synthmed.progression.predict.predict_followups`).
        classifier: the grade classifier run (default the one ``fit`` recorded; none: no risk).
        baseline: train and score the end-to-end baseline classifier.
        baseline_network, baseline_preset, baseline_steps: its network, classifier preset and steps.
        n_boot, seed: the subject bootstrap.
        gallery_subjects: rows of the gallery (fast progressors first, then slow ones).
        out: the folder of the files (default ``RUN/eval``).

    Returns (and with ``write`` saves, see :func:`eval_files`) the result: ``run``, ``test_store``,
    ``months``, ``extrapolation``, ``subjects`` (counts), ``truth``, ``risk_auroc``,
    ``risk_auroc_ci``, ``growth_auroc`` …, ``baseline_auroc`` …, ``risk_true_followup_auroc`` …,
    ``followup`` (``all`` and ``fast``: each predictor's ``mae``, ``psnr``, ``wt_dice``),
    ``wt_spearman``, ``wt_interval``, ``projection_psnr``, ``grade_classifier``,
    ``baseline_classifier``, ``skipped`` (why a number is ``None``) and ``files``.

    Raises:
        SynthmedError: an unfinished run, a store the generator does not make, no test subject
            with a follow-up at the horizon, bad options; with ``write``, existing files without
            ``overwrite`` (checked before any work).
    """
    prun = ProgressionRun.open(run)
    store = Store.open(test_store)
    if "test" not in store.splits:
        raise SynthmedError(f"{store.path}: no test split (splits: {list(store.splits)})")
    check_one_sample_per_visit(store.samples, str(store.path), "test")
    horizon = default_horizon(store.samples, "test") if months is None else float(months)
    pairs = followup_pairs(store.samples, horizon, "test", where=str(store.path))
    if n_boot < 1:
        raise SynthmedError(f"--n-boot must be >= 1, got {n_boot}")
    folder = Path(out) if out is not None else prun.folder(EVAL_DIR)
    files = eval_files(folder, store.path, horizon)
    if write:
        for path, kind in files.items():
            guard_output(path, [store.path], kind=kind, overwrite=overwrite)
    grade_run = Path(classifier) if classifier is not None else prun.classifier

    prediction = predict_followups(prun, store, pairs.baseline, pairs.subjects, horizon, k=k, metric=metric,
                                   weighting=weighting, mode=mode, device=device, progress=progress)
    base_images, base_labels = store.read(pairs.baseline)
    true_images, true_labels = store.read(pairs.followup)
    base_grade, true_grade, fast = pair_grades(store, pairs)
    subjects = pairs.subjects
    skipped: dict[str, str] = {}
    table = pd.DataFrame({
        "subject": subjects, "months": pairs.months, "fast": fast.astype(int), "baseline_grade": base_grade,
        "followup_grade": true_grade, "growth": prediction.growth,
        "wt_baseline": wt_fraction(base_labels), "wt_followup": wt_fraction(true_labels),
        "wt_predicted": prediction.wt, "wt_low": prediction.neighbour_wt.min(axis=1),
        "wt_high": prediction.neighbour_wt.max(axis=1), "wt_reconstruction": prediction.wt_reconstruction,
        "mae_predicted": _mae(prediction.images, true_images), "mae_copy_baseline": _mae(base_images, true_images),
        "psnr_predicted": _psnr(prediction.images, true_images), "psnr_copy_baseline": _psnr(base_images, true_images),
        "wt_dice_predicted": _dice(prediction.labels, true_labels),
        "wt_dice_copy_baseline": _dice(base_labels, true_labels),
        "projection_psnr": prediction.projection_psnr.astype(np.float64),
        "neighbours": [";".join(n) for n in prediction.neighbours],
    })
    one_class = "the test subjects at this horizon are all of one class (fast or slow)"

    def scored(name: str, scores: np.ndarray | None, why: str | None = None) -> dict[str, Any]:
        if scores is None:
            skipped[f"{name}_auroc"] = why or "not computed"
            return {f"{name}_auroc": None, f"{name}_auroc_ci": [None, None]}
        table[name] = scores
        result = _score(scores, fast, subjects, n_boot=n_boot, seed=seed)
        if result["auroc"] is None:
            skipped[f"{name}_auroc"] = one_class
        return {f"{name}_auroc": result["auroc"], f"{name}_auroc_ci": result["auroc_ci"]}

    grade_info: dict[str, Any] | None = None
    risk = risk_true = None
    if grade_run is not None:
        (p_base, p_pred, p_true), grade_info = _classifier_probabilities(
            grade_run, store, [base_images, prediction.images, true_images], device)
        risk, risk_true = progression_risk(p_base, p_pred), progression_risk(p_base, p_true)
        grade_info["accuracy"] = {  # arg-max of the class probabilities against the masks' grades
"baseline": float(np.mean(p_base.argmax(1) == base_grade)),
                                  "true_followup": float(np.mean(p_true.argmax(1) == true_grade)),
                                  "predicted_followup_vs_true_grade": float(np.mean(p_pred.argmax(1) == true_grade))}
    no_grade = "no grade classifier: pass --classifier (or fit with --classifier)"

    baseline_info: dict[str, Any] | None = None
    baseline_scores = None
    why_baseline = "--no-baseline"
    if baseline:
        baseline_scores, baseline_info, why_baseline = _baseline_scores(
            prun, horizon, base_images, network=baseline_network, preset=baseline_preset, steps=baseline_steps,
            seed=seed, device=device, progress=progress)

    covered = (table["wt_followup"] >= table["wt_low"]) & (table["wt_followup"] <= table["wt_high"])
    result: dict[str, Any] = {
        "run": str(prun.path.resolve()), "test_store": str(store.path.resolve()), "months": horizon,
        "extrapolation": {"k": int(prediction.neighbours.shape[1]), "metric": metric, "weighting": weighting,
                          "mode": mode, "center": "w_avg"},
        "subjects": {"test": int(len(subjects)), "fast": int(fast.sum()), "slow": int((~fast).sum()),
                     "without_followup": list(pairs.without)},
        "truth": {"fast": f"grade(follow-up mask) - grade(baseline mask) >= {MIN_JUMP}",
                  "grades": "data.grades: the WT share of the sample, binned (0, 0.7 %, 1.4 %)"},
        **scored("risk", risk, no_grade),
        **scored("growth", prediction.growth),
        **scored("baseline", baseline_scores, why_baseline),
        **scored("risk_true_followup", risk_true, no_grade),
        "followup": {"all": _group(table), "fast": _group(table[table["fast"] == 1])},
        "wt_spearman": {"predicted": spearman(prediction.wt, table["wt_followup"].to_numpy()),
                        "copy_baseline": spearman(table["wt_baseline"].to_numpy(), table["wt_followup"].to_numpy())},
        "wt_interval": {"coverage": float(covered.mean()),
                        "mean_width": float((table["wt_high"] - table["wt_low"]).mean())},
        "projection_psnr": float(table["projection_psnr"].mean()),
        "grade_classifier": grade_info, "baseline_classifier": baseline_info,
        "bootstrap": {"n_boot": int(n_boot), "seed": int(seed), "unit": "subject"},
        "skipped": skipped,
    }
    if not fast.any():
        skipped["followup.fast"] = "no fast progressor among the test subjects"
    if write:
        json_file, csv_file, png_file = files
        from synthmed.progression.gallery import progression_gallery

        shown = _gallery_rows(fast, gallery_subjects)
        labels = [f"{subjects[i]} {'fast' if fast[i] else 'slow'}"
                  + ("" if risk is None else f", risk {risk[i]:.2f}") for i in shown]
        progression_gallery(base_images[shown], base_labels[shown], prediction.images[shown],
                            prediction.labels[shown], true_images[shown], true_labels[shown], png_file,
                            row_labels=labels, title=f"{store.path.name}: {horizon:g} months ahead")
        result["files"] = {"json": str(json_file), "csv": str(csv_file), "gallery": str(png_file)}
        with atomic_file(csv_file) as tmp:
            table.to_csv(tmp, index=False, float_format="%.6g")
        with atomic_file(json_file) as tmp:
            tmp.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _gallery_rows(fast: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` subject rows: fast progressors first (up to half, more if slow ones run out), then slow."""
    fast_rows, slow_rows = np.flatnonzero(fast), np.flatnonzero(~fast)
    n_fast = min(len(fast_rows), max(n - len(slow_rows), (n + 1) // 2))
    return np.concatenate([fast_rows[:n_fast], slow_rows[: n - n_fast]]).astype(np.int64)


def _baseline_scores(prun: ProgressionRun, horizon: float, images: np.ndarray, *, network: str, preset: str,
                     steps: int | None, seed: int, device: str, progress: bool
                     ) -> tuple[np.ndarray | None, dict[str, Any] | None, str | None]:
    """The end-to-end classifier's probabilities of fast progression on the test baselines, trained on the
    fitted store's training subjects first (or reused); ``(None, None, why)`` when it cannot be trained."""
    from synthmed.classify.samples import predict
    from synthmed.progression.baseline import (NoBaselineTargets, baseline_run_name, load_progressor_classifier,
                                               train_progressor_classifier)

    fit_store = Store.open(prun.store)
    folder = prun.folder(BASELINES_DIR) / baseline_run_name(horizon, network, preset)
    try:
        info = train_progressor_classifier(folder, fit_store, horizon, network=network, preset=preset, steps=steps,
                                           seed=seed, device=device, progress=progress)
    except NoBaselineTargets as exc:
        return None, None, str(exc)
    net = load_progressor_classifier(folder, device=device)
    probs = predict(net, torch.from_numpy(np.ascontiguousarray(images)))[:, 0]
    return probs.astype(np.float64), {**info, "network": network, "preset": preset}, None

