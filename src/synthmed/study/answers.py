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

from synthmed.study.analysis import MIN_GENERATORS, dice_ranks, rank_correlation, rank_generators, relative_dice_table


NONE = pd.Series(dtype=float)


def _stats(values: pd.Series) -> dict[str, float | int | None]:
    values = pd.to_numeric(values, errors="coerce").dropna()
    if values.empty:
        return {"mean": None, "sd": None, "n": 0}
    return {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else None,
            "n": int(len(values))}


def _fraction_key(value: Any) -> str:
    return "all" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):g}"


def _full_subjects(frame: pd.DataFrame) -> pd.DataFrame:
    if "subject_fraction" not in frame.columns:
        return frame
    fraction = pd.to_numeric(frame.subject_fraction, errors="coerce")
    return frame[fraction.isna() | (fraction == 1.0)]


def study_answers(out: str | Path) -> dict[str, Any]:
    """The headline numbers of the study in ``out`` (see the module); ``{}`` before any stage finished."""
    from synthmed.study.report import evaluations, finished_stages, read_results

    out = Path(out)
    stages, results = finished_stages(out), read_results(out)
    if results.empty:
        return {}
    matched, _ = relative_dice_table(*evaluations(stages))
    wt = _full_subjects(matched[matched.region == "WT"]) if not matched.empty else matched
    dice = _full_subjects(results[(results.metric == "dice") & (results.region == "WT")])
    fidelity = results[results.metric.str.endswith("/fd", na=False)]
    memo = results[results.metric.str.startswith("memorization/", na=False)]
    answers: dict[str, Any] = {}
    for dataset in sorted(results.dataset.dropna().astype(str).unique()):
        mine = dice[dice.dataset.astype(str) == dataset]
        entry: dict[str, Any] = {"real_only": _stats(mine[mine.train_set == "real"].value), "generators": {}}
        features = sorted(fidelity.metric.unique(), key=lambda m: (not m.startswith("domain/"), m))
        fd = fidelity[(fidelity.dataset.astype(str) == dataset) & (fidelity.metric == features[0])] if features \
            else fidelity.iloc[0:0]
        fd_by_gen = fd.groupby("generator")["value"].mean()
        fd_rank = fd_by_gen.rank(method="min")
        names = sorted(set(mine.generator.dropna().astype(str)) | set(fd_by_gen.index.astype(str))
                       | set(memo[memo.dataset.astype(str) == dataset].generator.dropna().astype(str)))
        for gen in names:
            rel = wt[(wt.dataset.astype(str) == dataset) & (wt.generator.astype(str) == gen)] if not wt.empty else wt
            own = mine[mine.generator.astype(str) == gen]
            mixed = {}
            for key, sub in (rel[rel.train_set == "synthetic+real"].groupby(
                    rel[rel.train_set == "synthetic+real"].real_fraction.map(_fraction_key)) if not rel.empty else []):
                mixed[key] = _stats(sub.value)
            mixed_dice = {}
            own_mixed = own[own.train_set == "synthetic+real"]
            for key, sub in (own_mixed.groupby(own_mixed.real_fraction.map(_fraction_key)) if not own_mixed.empty
                             else []):
                mixed_dice[key] = _stats(sub.value)
            m = memo[(memo.dataset.astype(str) == dataset) & (memo.generator.astype(str) == gen)]
            mem = m.groupby(m.metric.str.split("/", n=1).str[1])["value"].mean()
            entry["generators"][gen] = {
                "relative_synthetic": _stats(rel[rel.train_set == "synthetic"].value if not rel.empty else NONE),
                "relative_mixed": mixed,
                "dice_synthetic": _stats(own[own.train_set == "synthetic"].value),
                "dice_mixed": mixed_dice,
                "fd": float(fd_by_gen[gen]) if gen in fd_by_gen.index else None,
                "fd_rank": int(fd_rank[gen]) if gen in fd_rank.index else None,
                "fd_features": features[0].split("/")[0] if features else None,
                "memorized_share": float(mem["fraction_above"]) if "fraction_above" in mem.index else None,
                "max_correlation": float(mem["max"]) if "max" in mem.index else None,
            }
        entry["spearman_fd_dice"] = _spearman(results, dataset)
        answers[dataset] = entry
    return answers


def _spearman(results: pd.DataFrame, dataset: str) -> float | None:
    """ρ of the FD ranks against the synthetic-only Dice ranks (as the report's rank-correlation table)."""
    rows = results[(results.dataset.astype(str) == dataset)]
    fid = rows[rows.metric.str.contains("/", na=False) & ~rows.metric.str.startswith("memorization/", na=False)]
    dice = rows[(rows.metric == "dice") & (rows.train_set == "synthetic")]
    if fid.empty or dice.empty:
        return None
    fid = fid.assign(features=fid.metric.str.split("/").str[0], name=fid.metric.str.split("/", n=1).str[1])
    table = fid.pivot_table(index=["dataset", "generator", "features"], columns="name", values="value", aggfunc="mean")
    ranks = rank_generators(table)
    corr = rank_correlation(ranks, dice_ranks(dice.groupby(["dataset", "generator"])["value"].mean()))
    corr = corr[corr.metric.astype(str).str.endswith("fd") & ~corr.metric.astype(str).str.contains("relative|train")]
    if corr.empty or corr.generators.max() < MIN_GENERATORS:
        return None
    value = float(corr.sort_values("metric").rho.iloc[0])
    return None if math.isnan(value) else value
