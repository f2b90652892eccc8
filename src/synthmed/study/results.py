"""The study's one tidy table, gathered from finished stages' ``result.json`` (and read back, :func:`read_results`).

Columns (:data:`COLUMNS`): study, dataset, generator, segmenter, classifier, task, mode, train_set,
augmentation, seed, real_fraction, subject_fraction, metric, region, value — one row per number.
Rows:

- ``evaluate``: metric ``dice`` / ``hd95`` / ``hd95_max`` (mean over test cases; ``hd95`` pools
  both directions' surface distances as medpy does, ``hd95_max`` is the larger directed 95th
  percentile as in MONAI) and ``dice_sd`` / ``hd95_sd`` / ``hd95_max_sd``, region WT, TC or ET;
  real_fraction 1 for ``real``, ``pretrained`` and ``pretrained-ssl``, 0 for ``synthetic``,
  the sweep's fraction (or empty: all of both stores) for ``synthetic+real``;
  subject_fraction the share of real training subjects used (1 but on the pre-training
  curve, whose train sets are ``real``, from scratch, ``pretrained``: pre-trained supervised on
  the generator's samples, and ``pretrained-ssl``: pre-trained self-supervised on their images,
  each then fine-tuned on the real subjects);
- ``fidelity``: metric ``<features>/<name>`` (e.g. ``domain/fd`` against the real test
  patients, ``domain/fd_train`` against the training patients at the same sample size,
  ``domain/kid_mean``; ``domain/ms_ssim_real``: the real test pairs' MS-SSIM; volumes add
  ``domain/slice_consistency.<name>``: ``correlation``, ``correlation_real``, ``correlation_ratio``,
  ``difference…``, ``difference_wasserstein``, ``difference_ks``, …), region empty;
- ``memorization``: metric ``memorization/<name>`` (max, mean, median, fraction_above, …);
- ``classify_eval`` (columns classifier, task, mode; segmenter and augmentation empty;
  real_fraction 1 for ``real``, 0 for ``synthetic``, empty for ``synthetic+real``: all of both
  stores): region is the task's output (``tumour``; ``NCR``, ``ED``, ``ET``; ``grade>=1`` …) or
  ``mean``, their macro mean (for ``presence`` equal to ``tumour``); metric ``auroc``,
  ``accuracy``, ``balanced_accuracy`` on the clean test samples, ``robust_<metric>@<ε>`` on
  adversarial ones through the clean batch norm (the deployed route; ``@0`` is the clean input)
  and, for ``dual-bn``, ``robust_adv_bn_<metric>@<ε>`` crafted and classified through the
  adversarial batch norm (the paper's protocol) (:func:`robust_metric`); and, region the
  explained output, ``saliency_mass_in_mask``, ``saliency_pointing_game``, ``saliency_auroc``
  (means over the tumour-bearing test samples; none when the test split has no tumour);
- ``progression_eval`` (columns generator: the StyleGAN's label; classifier, task ``grade`` and
  mode: its grade classifier's run, empty without one; seed the progression's; region empty):
  metric ``progression_<score>_auroc`` with ``…_auroc_ci_low`` / ``…_auroc_ci_high`` (the
  subject-bootstrap interval) for the scores of fast progression ``risk``, ``growth``,
  ``baseline`` and ``risk_true_followup``;
  ``progression_followup.<all|fast>.<predicted|copy_baseline>.<mae|psnr|wt_dice>`` (the
  predicted follow-ups against the true ones, beside copying the baseline) and
  ``progression_followup.<all|fast>.n``; ``progression_wt_spearman.<predicted|copy_baseline>``,
  ``progression_wt_interval.<coverage|mean_width>``, ``progression_months`` and
  ``progression_projection_psnr`` (:func:`progression_rows`; ``None`` values are NaN).

Unfinished stages are left out.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthmed.atomic import atomic_file
from synthmed.study.plan import Plan
from synthmed.study.stages import RESULT_JSON

COLUMNS = ("study", "dataset", "generator", "segmenter", "classifier", "task", "mode", "train_set", "augmentation",
           "seed", "real_fraction", "subject_fraction", "metric", "region", "value")
#: the metric-name prefix of each robust route (``clean``: the deployed one).
ROUTE_PREFIX = {"clean": "robust_", "adversarial": "robust_adv_bn_"}
#: the metric-name prefix of the saliency scores.
SALIENCY_PREFIX = "saliency_"
#: the metric-name prefix of the progression rows.
PROGRESSION_PREFIX = "progression_"
#: the scores of fast progression a ``progression_eval`` stage gives an AUROC of.
PROGRESSION_SCORES = ("risk", "growth", "baseline", "risk_true_followup")
RESULTS_CSV = "results.csv"
RESULTS_PARQUET = "results.parquet"


def _numbers(values: dict[str, Any], prefix: str) -> list[tuple[str, float]]:
    """Numeric leaves of ``values`` (one level of nesting, as ``a.b``); booleans and lists skipped."""
    out = []
    for name, value in values.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out.append((f"{prefix}{name}", float(value)))
        elif isinstance(value, dict):
            out += [(f"{prefix}{name}.{k}", float(v)) for k, v in value.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return out


def robust_metric(metric: str, eps: float, route: str = "clean") -> str:
    """The results' name of ``metric`` under attack at ``eps`` through ``route``: ``robust_auroc@0.005``
    (the clean BN), ``robust_adv_bn_auroc@0.005`` (the adversarial BN)."""
    return f"{ROUTE_PREFIX[route]}{metric}@{eps:g}"


def robust_eps(metric: str) -> float | None:
    """The ε of a :func:`robust_metric` name (``None`` for any other metric)."""
    if not metric.startswith(tuple(ROUTE_PREFIX.values())) or "@" not in metric:
        return None
    return float(metric.rsplit("@", 1)[1])


def classifier_rows(result: dict[str, Any]) -> list[tuple[str, str, float | None]]:
    """``(metric, region, value)`` of a ``classify_eval`` stage's result (see the module docstring)."""
    labels = [*result["labels"], "mean"]
    first = result["clean"][result["labels"][0]]
    metrics = [m for m in first if f"{m}_ci" in first]  # auroc, accuracy, balanced_accuracy: those with an interval
    rows = [(m, label, result["clean"][label][m]) for label in labels for m in metrics]
    for route, points in result["robust"]["routes"].items():
        rows += [(robust_metric(m, point["eps"], route), label, point["metrics"][label][m])
                 for point in points for label in labels for m in metrics]
    saliency = result.get("saliency")
    for entry in (saliency or {}).get("runs", []):  # the scores are the entries with an interval beside them
        rows += [(f"{SALIENCY_PREFIX}{score}", saliency["target"], entry[score])
                 for score in entry if f"{score}_ci" in entry]
    return rows


def _leaves(values: dict[str, Any], prefix: str) -> list[tuple[str, float | None]]:
    """Every numeric or ``None`` leaf of nested ``values`` as ``(prefix + dotted path, value)``."""
    out: list[tuple[str, float | None]] = []
    for name, value in values.items():
        if isinstance(value, dict):
            out += _leaves(value, f"{prefix}{name}.")
        elif value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            out.append((f"{prefix}{name}", value))
    return out


def progression_rows(result: dict[str, Any]) -> list[tuple[str, float | None]]:
    """``(metric, value)`` of a ``progression_eval`` stage's result (see the module docstring)."""
    rows: list[tuple[str, float | None]] = []
    for score in PROGRESSION_SCORES:
        low, high = result[f"{score}_auroc_ci"]
        rows += [(f"{score}_auroc", result[f"{score}_auroc"]), (f"{score}_auroc_ci_low", low),
                 (f"{score}_auroc_ci_high", high)]
    rows += _leaves({k: result[k] for k in ("followup", "wt_spearman", "wt_interval")}, "")
    rows += [("months", result["months"]), ("projection_psnr", result["projection_psnr"])]
    return [(PROGRESSION_PREFIX + metric, value) for metric, value in rows]


def gather(plan: Plan, out: str | Path) -> pd.DataFrame:
    """The results of ``plan``'s finished stages in ``out`` as a DataFrame with :data:`COLUMNS`."""
    rows: list[dict[str, Any]] = []
    for stage in plan.stages.values():
        if stage.kind not in ("evaluate", "fidelity", "memorization", "classify_eval", "progression_eval") \
                or not plan.is_done(out, stage):
            continue
        result = json.loads((plan.folder(out, stage) / RESULT_JSON).read_text())
        base = {c: None for c in COLUMNS}
        base.update(study=plan.spec.name, **{k: v for k, v in stage.labels.items() if k in COLUMNS})
        if stage.kind == "classify_eval":
            rows += [{**base, "metric": metric, "region": region, "value": value}
                     for metric, region, value in classifier_rows(result)]
        elif stage.kind == "progression_eval":
            rows += [{**base, "metric": metric, "value": value} for metric, value in progression_rows(result)]
        elif stage.kind == "evaluate":
            for stat, suffix in (("mean", ""), ("sd", "_sd")):
                for region, metrics in (result.get(stat) or {}).items():
                    for metric, value in metrics.items():
                        rows.append({**base, "metric": f"{metric}{suffix}", "region": region, "value": value})
        else:
            prefix = f"{stage.labels['features']}/" if stage.kind == "fidelity" else "memorization/"
            skip = {"histogram"} if stage.kind == "memorization" else set()
            for metric, value in _numbers({k: v for k, v in result.items() if k not in skip}, prefix):
                rows.append({**base, "metric": metric, "value": value})
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["value"] = [math.nan if v is None else float(v) for v in frame["value"]]
    return frame


def write_results(plan: Plan, out: str | Path) -> Path:
    """Write ``results.csv`` (and ``results.parquet`` when pyarrow is installed) into ``out``; return the CSV.

    Files that already hold this table are left as they are (a rerun of a finished study
    rewrites nothing, so ``report.html`` is not rebuilt either).
    """
    out = Path(out)
    frame = gather(plan, out)
    csv, parquet = out / RESULTS_CSV, out / RESULTS_PARQUET
    text = frame.to_csv(index=False)
    with_parquet = importlib.util.find_spec("pyarrow") is not None
    if csv.is_file() and csv.read_text() == text and (parquet.is_file() or not with_parquet):
        return csv
    if with_parquet:  # parquet first: a CSV holding this table means both are written
        with atomic_file(parquet) as tmp:
            frame.to_parquet(tmp, index=False)
    with atomic_file(csv) as tmp:
        tmp.write_text(text)
    return csv


def read_results(out: str | Path) -> pd.DataFrame:
    """``results.csv`` (empty with :data:`COLUMNS` when missing; a table written before the
    ``subject_fraction`` column existed gets it: 1 on segmentation rows)."""
    path = Path(out) / RESULTS_CSV
    if not path.is_file():
        return pd.DataFrame(columns=list(COLUMNS))
    frame = pd.read_csv(path)
    if "subject_fraction" not in frame.columns:
        segmentation = frame.metric.isin(["dice", "hd95", "dice_sd", "hd95_sd"])
        frame["subject_fraction"] = np.where(segmentation, 1.0, np.nan)
    return frame[[c for c in COLUMNS if c in frame.columns]]
