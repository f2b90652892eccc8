"""The report's Disease progression section: AUROCs of fast progression, predicted follow-ups against
copying the baseline, and each run's gallery.

Built from the ``progression_eval`` rows of the results table
(:func:`~synthmed.study.results.progression_rows`) and the finished ``progression_eval`` stages'
folders; a study without them has no such section (:data:`~synthmed.study.report.OPTIONAL_SECTIONS`).
A progression run is one dataset × StyleGAN × grade classifier (:data:`GROUP`), one seed:

- the AUROC table: for each score of fast progression (the risk from the grade classifier on the
  baseline and the predicted follow-up, the predicted WT growth, the end-to-end baseline
  classifier, and the risk with the true follow-up as a reference), the AUROC with its
  subject-bootstrap 95 % interval;
- the follow-up table: on all test subjects and on the fast progressors, the predicted follow-up's
  image MAE, PSNR and WT Dice against the true follow-up, beside copying the baseline, and the
  Spearman correlation of WT volume with the true follow-up's;
- why a number is missing (the evaluation's ``skipped``), and the baseline | predicted | true
  follow-up gallery.
"""

from __future__ import annotations

import json

import pandas as pd

from synthmed.study.results import PROGRESSION_PREFIX, PROGRESSION_SCORES
from synthmed.study.sections import MISSING, Section, fmt
from synthmed.study.stages import PROGRESSION_PNG, RESULT_JSON

#: the columns a progression run is told apart by.
GROUP = ["dataset", "generator", "classifier"]
#: the AUROC table's column of each score of fast progression.
SCORE_NAMES = {"risk": "risk (predicted follow-up)", "growth": "predicted WT growth",
               "baseline": "end-to-end baseline", "risk_true_followup": "risk (true follow-up, reference)"}
#: the follow-up table's measures, by the results' name.
MEASURES = {"mae": "MAE", "psnr": "PSNR (dB)", "wt_dice": "WT Dice"}


def _with_ci(values: pd.Series, score: str) -> str:
    """``"0.812 [0.61, 0.97]"`` from a run's metric values (:data:`MISSING` without an AUROC)."""
    value = values.get(f"{PROGRESSION_PREFIX}{score}_auroc")
    if value is None or pd.isna(value):
        return MISSING
    low, high = (values.get(f"{PROGRESSION_PREFIX}{score}_auroc_ci_{end}") for end in ("low", "high"))
    return f"{value:.3f}" + ("" if low is None or pd.isna(low) else f" [{low:.3f}, {high:.3f}]")


def _records(stages: list[dict]) -> list[tuple[dict, dict]]:
    """``(stage record, result)`` of the finished ``progression_eval`` stages, in dataset, generator order."""
    found = []
    for record in stages:
        path = record["folder"] / RESULT_JSON
        if record["kind"] == "progression_eval" and path.is_file():
            found.append((record, json.loads(path.read_text())))
    return sorted(found, key=lambda x: tuple(str(x[0]["labels"].get(k) or "") for k in GROUP))


def write_progression(stages: list[dict], results: pd.DataFrame, section: Section) -> None:
    """Fill ``section`` (see the module docstring); nothing when the study has no progression results."""
    rows = results[results.metric.str.startswith(PROGRESSION_PREFIX, na=False)] if not results.empty else results
    records = _records(stages)
    if rows.empty and not records:
        return
    rows = rows.assign(**{k: rows[k].fillna(MISSING).replace("", MISSING) for k in GROUP})
    runs = [(key, sub.set_index("metric")["value"]) for key, sub in rows.groupby(GROUP, sort=True)]
    section.text("Disease progression by style-based manifold extrapolation (Han et al. 2021): the training "
                 "subjects' visits projected into the StyleGAN's latent space; each test subject's baseline "
                 "extrapolated along its nearest training subjects' trajectories to the horizon and synthesised "
                 "(image and mask). Fast progression (the masks' grade jump of at least 2) is scored by AUROC, with "
                 "a percentile bootstrap over test subjects (95 %).")
    aurocs = [dict(zip(GROUP, key), months=fmt(values.get(f"{PROGRESSION_PREFIX}months")),
                   **{name: _with_ci(values, score) for score, name in SCORE_NAMES.items()})
              for key, values in runs]
    if aurocs:
        section.table(pd.DataFrame(aurocs, columns=[*GROUP, "months", *SCORE_NAMES.values()]))
    follow = []
    for key, values in runs:
        for group in ("all", "fast"):
            n = values.get(f"{PROGRESSION_PREFIX}followup.{group}.n")
            for who in ("predicted", "copy_baseline"):
                row = dict(zip(GROUP, key), subjects=f"{group} ({fmt(None if n is None else int(n))})",
                           predictor=who.replace("_", " "))
                row.update({name: fmt(values.get(f"{PROGRESSION_PREFIX}followup.{group}.{who}.{m}"))
                            for m, name in MEASURES.items()})
                row["WT Spearman"] = fmt(values.get(f"{PROGRESSION_PREFIX}wt_spearman.{who}")) \
                    if group == "all" else MISSING
                follow.append(row)
    if follow:
        section.text("Predicted follow-ups against the true ones, beside copying the baseline (the baseline image "
                     "and mask as the prediction): means over the test subjects of the image MAE and PSNR and of "
                     "the WT Dice; Spearman's ρ of the WT volume with the true follow-up's, over all test subjects.")
        section.table(pd.DataFrame(follow))
    for record, result in records:
        labels = record["labels"]
        name = f"{labels.get('dataset')}: {labels.get('generator')}" + (
            f", {labels['classifier']}" if labels.get("classifier") else "")
        for what, why in (result.get("skipped") or {}).items():
            section.text(f"{name}: no {what}: {why}.")
        gallery = record["folder"] / result.get("gallery", PROGRESSION_PNG)
        if gallery.is_file():
            section.image(gallery.read_bytes(), f"{name}: baseline | predicted | true follow-up, "
                          f"{result['months']:g} months ahead")
