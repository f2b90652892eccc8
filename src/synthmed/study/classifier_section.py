"""The report's Classifiers section: clean and robust AUROC, AUROC against ε, saliency scores and galleries.

Built from the ``classify_eval`` rows of the results table (:func:`~synthmed.study.results.classifier_rows`)
and the finished ``classify_eval`` stages' folders; a study without them has no such section
(:data:`~synthmed.study.report.OPTIONAL_SECTIONS`). A group of runs is one dataset ×
classifier × train set × generator × mode (:data:`GROUP`); its numbers are the mean ± sd over
seeds of the macro mean over the task's outputs (region ``mean``):

- the AUROC table: clean, then under attack at each ε > 0 through the clean batch norm (the
  deployed route) and, for ``dual-bn``, through the adversarial one (the paper's protocol);
- per dataset and classifier, a figure of AUROC against ε (ε = 0 is the clean input), a panel
  per train set, a line per mode and route, means over seeds;
- the saliency table (mass in mask, pointing game, voxel AUROC of the explained output on the
  tumour-bearing test samples) and each run's gallery, for the lowest seed of each group.
"""

from __future__ import annotations

import json

import pandas as pd

from synthmed.classify.names import MODES
from synthmed.study.plots import curves_png
from synthmed.study.results import PROGRESSION_PREFIX, ROUTE_PREFIX, SALIENCY_PREFIX, robust_eps
from synthmed.study.sections import MISSING, Section, mean_sd
from synthmed.study.stages import RESULT_JSON, SALIENCY_PNG

#: the columns a group of classifier runs is told apart by.
GROUP = ["dataset", "classifier", "task", "train_set", "generator", "mode"]
#: the train sets in the order the tables show them.
TRAIN_SET_ORDER = ("real", "synthetic", "synthetic+real")
#: the saliency scores' column names.
SALIENCY_COLUMNS = {"mass_in_mask": "mass in mask", "pointing_game": "pointing game", "auroc": "voxel AUROC"}


def _column(metric: str) -> str | None:
    """The AUROC table's column of a results metric (``None``: not shown)."""
    if metric == "auroc":
        return "AUROC, clean"
    eps = robust_eps(metric)
    if eps is None or eps == 0 or not metric.split("@")[0].endswith("auroc"):
        return None
    return f"AUROC, ε {eps:g}" + (", adversarial BN" if metric.startswith(ROUTE_PREFIX["adversarial"]) else "")


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in dataset, classifier, train set (real first), generator and mode (standard first) order."""
    keys = {"train_set": lambda s: s.map({t: i for i, t in enumerate(TRAIN_SET_ORDER)}),
            "mode": lambda s: s.map({m: i for i, m in enumerate(MODES)})}
    return frame.sort_values(GROUP, key=lambda s: keys.get(s.name, lambda v: v)(s), kind="stable")


def _grouped(rows: pd.DataFrame, columns: pd.Series, order: list[str]) -> pd.DataFrame:
    """``rows``' values, mean ± sd over seeds, one row per :data:`GROUP`, a column per ``columns`` value."""
    table = rows.assign(column=columns).groupby([*GROUP, "column"], dropna=False)["value"].apply(mean_sd)
    table = table.unstack("column").reset_index()
    return _sorted(table)[GROUP + [c for c in order if c in table.columns]].fillna(MISSING).reset_index(drop=True)


def _records(stages: list[dict]) -> list[tuple[dict, dict]]:
    """``(stage record, result)`` of the finished ``classify_eval`` stages."""
    found = []
    for record in stages:
        path = record["folder"] / RESULT_JSON
        if record["kind"] == "classify_eval" and path.is_file():
            found.append((record, json.loads(path.read_text())))
    return found


def _line(mode: str, route: str) -> str:
    return mode if route == "clean" else f"{mode}, adversarial BN"


def write_classifiers(stages: list[dict], results: pd.DataFrame, section: Section) -> None:
    """Fill ``section`` (see the module docstring); nothing when the study has no classifier results."""
    records = _records(stages)
    rows = results[results.classifier.notna() & (results.classifier.astype(str) != "")
                   & ~results.metric.str.startswith(PROGRESSION_PREFIX, na=False)] \
        if "classifier" in results.columns else results.iloc[:0]  # progression rows name their grade classifier
    if rows.empty and not records:
        return
    rows = rows.assign(generator=rows.generator.fillna("—").replace("", "—"), dataset=rows.dataset.fillna("—"))
    means = rows[rows.region == "mean"]
    section.text("Classifiers trained on each train set and scored on the real test patients: AUROC, the macro mean "
                 "over the task's outputs, on clean inputs and under PGD attack (adversarial-robustness-toolbox, "
                 "step ε/2) at each ε through the clean batch norm (deployed) and, for dual-bn, through the "
                 "adversarial one (the paper's protocol, which tells the network that its input is attacked); "
                 "mean ± sd over seeds.")
    columns = means.metric.map(_column)
    shown = means[columns.notna()]
    order = ["AUROC, clean"] + sorted({c for c in columns.dropna() if c != "AUROC, clean"},
                                      key=lambda c: (c.endswith("adversarial BN"), float(c.split("ε ")[1].split(",")[0])))
    if not shown.empty:
        section.table(_grouped(shown, columns[columns.notna()], order))
    _eps_curves(means, records, section)
    _saliency(rows, records, section)


def _eps_curves(means: pd.DataFrame, records: list[tuple[dict, dict]], section: Section) -> None:
    """Per dataset and classifier, AUROC (means over seeds) against ε: a panel per train set, a line per mode and route."""
    robust = means[means.metric.map(robust_eps).notna() & means.metric.str.contains("auroc@", regex=False)]
    norms = {(r["labels"].get("dataset"), r["labels"].get("classifier")): res["robust"]["attack"]["norm"]
             for r, res in records}
    for (dataset, classifier), sub in robust.groupby(["dataset", "classifier"], sort=True):
        curves: dict[str, dict[str, pd.Series]] = {}
        for (train_set, generator), panel in _sorted(sub).groupby(["train_set", "generator"], sort=False):
            lines = curves.setdefault(train_set if generator == "—" else f"{train_set} ({generator})", {})
            for mode, by_mode in panel.groupby("mode", sort=False):
                for route, prefix in ROUTE_PREFIX.items():
                    points = by_mode[by_mode.metric.str.startswith(f"{prefix}auroc@")]
                    if not points.empty:
                        eps = points.metric.map(robust_eps)
                        lines[_line(str(mode), route)] = points.groupby(eps)["value"].mean().sort_index()
        norm = norms.get((dataset, classifier), "")
        section.image(curves_png(curves, f"ε ({norm})" if norm else "ε", ylabel="AUROC", xlim=None, ylim=(0, 1)),
                      f"{dataset}: {classifier} AUROC against ε")


def _saliency(rows: pd.DataFrame, records: list[tuple[dict, dict]], section: Section) -> None:
    """The saliency table, the runs without saliency, and the galleries of each group's lowest seed."""
    scores = rows[rows.metric.str.startswith(SALIENCY_PREFIX, na=False)]
    methods = sorted({res["saliency"]["method"] for _, res in records if res.get("saliency")})
    skipped = [(r["labels"], res["saliency_skipped"]) for r, res in records if res.get("saliency_skipped")]
    if scores.empty and not skipped:
        return
    if not scores.empty:
        section.text(f"Saliency ({', '.join(methods) or MISSING}) of the explained output on the tumour-bearing test "
                     "samples, scored against the WT mask: the share of positive saliency inside it, the pointing "
                     "game and the voxel-wise AUROC; mean ± sd over seeds.")
        names = scores.metric.str[len(SALIENCY_PREFIX):].map(SALIENCY_COLUMNS)
        section.table(_grouped(scores, names, list(SALIENCY_COLUMNS.values())))
    for reason in dict.fromkeys(reason for _, reason in skipped):
        runs = [f"{labels.get('dataset')}: {labels.get('classifier')} {labels.get('mode')} {labels.get('train_set')} "
                f"seed {labels.get('seed')}" for labels, why in skipped if why == reason]
        section.text(f"No saliency for {len(runs)} run(s) ({', '.join(runs)}): {reason}.")
    galleries = [(r, res) for r, res in records if res.get("saliency") and (r["folder"] / SALIENCY_PNG).is_file()]
    first: dict[tuple, tuple[dict, dict]] = {}
    for record, result in sorted(galleries, key=lambda x: x[0]["labels"].get("seed", 0)):
        labels = record["labels"]
        first.setdefault(tuple(str(labels.get(k, "")) for k in GROUP), (record, result))
    frame = pd.DataFrame([dict(zip(GROUP, key)) for key in first], columns=GROUP)
    for key in (tuple(row) for row in _sorted(frame).itertuples(index=False)):
        record, result = first[key]
        labels = record["labels"]
        where = labels.get("train_set", "") + (f" ({labels['generator']})" if labels.get("generator") else "")
        section.image((record["folder"] / SALIENCY_PNG).read_bytes(),
                      f"{labels.get('dataset')}: {labels.get('classifier')} {labels.get('mode')}, {where}, seed "
                      f"{labels.get('seed')}: {result['saliency']['method']} saliency of "
                      f"{result['saliency']['target']}")
