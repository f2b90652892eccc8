"""A finished study's headline numbers as plain data (for benchmarks and scripts; the report shows the same).

:func:`study_answers` reads a study folder and returns, per dataset:

- ``real_only``: WT Dice of the real-only runs on the real test patients (mean, sd, n over
  seeds; pre-training-curve runs left out);
- per generator: relative WT Dice (:func:`~synthmed.study.analysis.relative_dice_table`, against
  the matched real-only run) of the ``synthetic`` runs and of the ``synthetic+real`` runs per
  real fraction (``"all"``: all of both stores), each ``{"mean", "sd", "n"}``; the absolute WT
  Dice of the same runs; ``fd`` (Fréchet distance to the real test patients in the first
  feature space the study computed, ``domain`` when present) and its rank among the dataset's
  generators (1 = lowest FD); memorization ``fraction_above`` and ``max`` correlation;
- ``spearman_fd_dice``: Spearman's ρ between the generators' FD ranks and their synthetic-only
  Dice ranks (``None`` with fewer than 3 generators).

Missing pieces are ``None``; sd is ``None`` for a single run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from synthmed.study.analysis import (
    MIN_GENERATORS,
    all_subjects,
    dice_ranks,
    fd_ranks,
    generation_table,
    memorization_by_generator,
    rank_correlation,
    rank_generators,
    relative_dice_table,
)
from synthmed.study.records import evaluations, finished_stages
from synthmed.study.results import read_results

NONE = pd.Series(dtype=float)


def _stats(values: pd.Series) -> dict[str, float | int | None]:
    values = pd.to_numeric(values, errors="coerce").dropna()
    if values.empty:
        return {"mean": None, "sd": None, "n": 0}
    return {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else None,
            "n": int(len(values))}


def _fraction_key(value: Any) -> str:
    return "all" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):g}"


def _by_fraction(rows: pd.DataFrame) -> dict[str, dict[str, float | int | None]]:
    """``{real fraction key: stats}`` of the ``synthetic+real`` rows' values."""
    mixed = rows[rows.train_set == "synthetic+real"] if not rows.empty else rows
    if mixed.empty:
        return {}
    return {key: _stats(sub.value) for key, sub in mixed.groupby(mixed.real_fraction.map(_fraction_key))}


def study_answers(out: str | Path) -> dict[str, Any]:
    """The headline numbers of the study in ``out`` (see the module); ``{}`` before any stage finished."""
    out = Path(out)
    stages, results = finished_stages(out), read_results(out)
    if results.empty:
        return {}
    matched, _ = relative_dice_table(*evaluations(stages))
    wt = all_subjects(matched[matched.region == "WT"]) if not matched.empty else matched
    dice = all_subjects(results[(results.metric == "dice") & (results.region == "WT")])
    table = generation_table(results)
    ranks = rank_generators(table) if not table.empty else pd.DataFrame()
    rank, features = fd_ranks(ranks)
    memorization = memorization_by_generator(stages, results)
    answers: dict[str, Any] = {}
    for dataset in sorted(results.dataset.dropna().astype(str).unique()):
        mine = dice[dice.dataset.astype(str) == dataset]
        entry: dict[str, Any] = {"real_only": _stats(mine[mine.train_set == "real"].value), "generators": {}}
        fd = table.xs((dataset, features), level=("dataset", "features"))["fd"] if features else NONE
        names = sorted(set(mine.generator.dropna().astype(str)) | set(fd.index.astype(str))
                       | {g for d, g in memorization if d == dataset})
        for gen in names:
            rel = wt[(wt.dataset.astype(str) == dataset) & (wt.generator.astype(str) == gen)] if not wt.empty else wt
            own = mine[mine.generator.astype(str) == gen]
            mem = memorization.get((dataset, gen), {})
            gen_rank = rank.get((dataset, gen), math.nan) if not rank.empty else math.nan
            entry["generators"][gen] = {
                "relative_synthetic": _stats(rel[rel.train_set == "synthetic"].value if not rel.empty else NONE),
                "relative_mixed": _by_fraction(rel),
                "dice_synthetic": _stats(own[own.train_set == "synthetic"].value),
                "dice_mixed": _by_fraction(own),
                "fd": float(fd[gen]) if gen in fd.index else None,
                "fd_rank": None if math.isnan(gen_rank) else int(gen_rank),
                "fd_features": features or None,
                "memorized_share": mem.get("fraction_above"),
                "max_correlation": mem.get("max"),
            }
        entry["spearman_fd_dice"] = _spearman(results, ranks, features, dataset)
        answers[dataset] = entry
    return answers


def _spearman(results: pd.DataFrame, ranks: pd.DataFrame, features: str, dataset: str) -> float | None:
    """ρ of the FD ranks against the synthetic-only Dice ranks (as the report's rank-correlation table)."""
    dice = results[(results.metric == "dice") & (results.train_set == "synthetic")
                   & (results.dataset.astype(str) == dataset)]
    if ranks.empty or dice.empty or not features:
        return None
    corr = rank_correlation(ranks, dice_ranks(dice.groupby(["dataset", "generator"])["value"].mean()))
    corr = corr[(corr.metric == f"{features}/fd") & (corr.dataset.astype(str) == dataset)]
    if corr.empty or corr.generators.max() < MIN_GENERATORS:
        return None
    value = float(corr.rho.iloc[0])
    return None if math.isnan(value) else value
