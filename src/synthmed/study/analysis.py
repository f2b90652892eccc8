"""The comparisons a study is judged by — relative Dice against a matched real-only reference,
generator ranks and their rank correlation with Dice — computed once for ``synthmed segment
relative``, the study report and :mod:`.answers`.

**Relative Dice** of a run = its mean Dice on the test patients / the mean Dice of its
*reference*, per region (``nan`` where the reference's Dice is 0), and ``mean`` = the mean of
the three ratios. The reference is a run trained on real data only (no synthetic samples, no
pre-training) that matches the compared run in everything but the training data
(:data:`MATCHED`): the test store (hence the dataset) and the checkpoint evaluated, the network
and its settings (preset), steps, augmentation, seed, share of real training subjects and the
rest of the training recipe. Anything else gives no relative Dice: an error naming the first
difference (:func:`relative_dice`) or, in a table, the run listed as unmatched with that
reason (:func:`relative_dice_table`) — never a ratio of unlike runs.

**Ranks**: generators ranked per metric within each dataset and feature space, 1 = best
(:data:`RANKED` says which direction is better); ties share the best rank of their group
(``min``, "1 2 2 4"). **Rank correlation**: Spearman's ρ (scipy; tied ranks averaged) between
a metric's ranks and the generators' Dice ranks, per dataset; ``nan`` with fewer than
:data:`MIN_GENERATORS` generators having both.

The results-table views they start from are here too: the generation metrics per generator
(:func:`generation_table`), the runs on every real subject (:func:`all_subjects`), the FD rank
column (:func:`fd_ranks`) and the memorization numbers per generator
(:func:`memorization_by_generator`).

Evaluations are the dicts :func:`synthmed.segmentation.evaluate_run` returns (and writes as
``RUN/eval/<store>.json``; a study's ``evaluate`` stages keep them as ``result.json``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthmed.errors import SynthmedError

REGIONS = ("WT", "TC", "ET")

#: what a reference must share with the compared run, in the order differences are reported:
#: field → what it is called in messages.
MATCHED = {
    "test_store": "test store",
    "checkpoint": "checkpoint evaluated",
    "network": "network",
    "preset": "preset",
    "model": "network settings",
    "steps": "steps",
    "aug": "augmentation",
    "seed": "seed",
    "subject_fraction": "share of real training subjects",
    "recipe": "training settings",
}
#: the training settings compared besides steps and augmentation (``recipe``).
RECIPE = ("batch", "lr", "weight_decay", "val_fraction", "validate_every", "grad_clip")

#: generation metrics ranked, by name after ``<features>/``: True = lower is better.
RANKED = {"fd": True, "relative_fd": True, "kid_mean": True, "hd95": True, "is_mean": False, "precision": False,
          "recall": False, "density": False, "coverage": False, "dice": False}
#: fewer generators than this give no rank correlation.
MIN_GENERATORS = 3


# ----------------------------------------------------------------------------- relative Dice


def load_evaluation(value: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """An evaluation dict, or the one in the JSON file ``value``.

    Raises:
        SynthmedError: no such file, or not an evaluation (no ``mean``).
    """
    if isinstance(value, Mapping):
        return dict(value)
    path = Path(value)
    if not path.is_file():
        raise SynthmedError(f"{path}: no such evaluation JSON")
    try:
        result = json.loads(path.read_text())
    except ValueError:
        raise SynthmedError(f"{path}: not a JSON file") from None
    if not isinstance(result, dict) or "mean" not in result:
        raise SynthmedError(f"{path}: not an evaluation (write one with `synthmed segment eval`)")
    return dict(result, source=str(path))


def _name(evaluation: Mapping[str, Any]) -> str:
    return str(evaluation.get("source") or evaluation.get("run") or "the run")


def identity(evaluation: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`MATCHED` fields of an evaluation (``preset`` ``None`` when its run did not record it).

    Raises:
        SynthmedError: the evaluation does not record its run's network and training settings
            (written by an older synthmed).
    """
    if not isinstance(evaluation.get("model"), Mapping) or not isinstance(evaluation.get("training"), Mapping):
        raise SynthmedError(f"{_name(evaluation)}: the evaluation does not record its run's network and training "
                            "settings (written by an older synthmed); run `synthmed segment eval` again")
    model, training = dict(evaluation["model"]), evaluation["training"]
    return {"test_store": evaluation.get("test_store"), "checkpoint": (evaluation.get("checkpoint") or {}).get("name"),
            "network": model.pop("network", None), "preset": training.get("preset"), "model": model,
            "steps": training.get("steps"), "aug": training.get("aug"), "seed": evaluation.get("seed"),
            "subject_fraction": float((evaluation.get("train_set") or {}).get("subject_fraction", 1.0)),
            "recipe": {k: training.get(k) for k in RECIPE}}


def is_real_only(evaluation: Mapping[str, Any]) -> bool:
    """Trained on real data only: a real training set and no pre-training."""
    return (evaluation.get("train_set") or {}).get("kind") == "real" and \
        not (evaluation.get("training") or {}).get("pretrain")


def differences(run: Mapping[str, Any], reference: Mapping[str, Any]) -> list[str]:
    """How two :func:`identity` dicts differ, one phrase per differing field in :data:`MATCHED`
    order, the run's value first (``steps 3 vs 2``; empty: they match). ``preset`` is compared only when both runs record it; their
    resolved network and training settings are compared in any case."""
    out = []
    for field, title in MATCHED.items():
        a, b = run[field], reference[field]
        if field == "preset" and (a is None or b is None):
            continue
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            keys = [k for k in dict.fromkeys([*a, *b]) if _canonical(a.get(k)) != _canonical(b.get(k))]
            if keys:
                out.append(f"{title} ({', '.join(f'{k} {a.get(k)!r} vs {b.get(k)!r}' for k in keys)})")
        elif _canonical(a) != _canonical(b):
            out.append(f"{title} {a!r} vs {b!r}")
    return out


def _canonical(value: Any) -> Any:
    """Lists and tuples alike (JSON turns tuples into lists)."""
    return json.dumps(value, sort_keys=True, default=str)


def dice_ratios(evaluation: Mapping[str, Any], reference: Mapping[str, Any]) -> dict[str, float]:
    """``{"WT", "TC", "ET": Dice / reference Dice, "mean": mean of the three}`` from the evaluations'
    mean Dice (``nan`` where the reference's is 0); no matching is checked here."""
    out = {}
    for region in REGIONS:
        ref = float(reference["mean"][region]["dice"])
        out[region] = float(evaluation["mean"][region]["dice"]) / ref if ref > 0 else math.nan
    out["mean"] = float(np.mean([out[r] for r in REGIONS]))
    return out


def relative_dice(evaluation: Mapping[str, Any] | str | Path, reference: Mapping[str, Any] | str | Path
                  ) -> dict[str, float]:
    """Relative Dice of the run behind ``evaluation`` against the real-only run behind ``reference``
    (dicts or JSON files; see the module docstring for the matching rules).

    Returns:
        :func:`dice_ratios`.

    Raises:
        SynthmedError: the reference is not real-only, or differs in anything but its training
            data (naming what), or an evaluation lacks its run's settings.
    """
    run, ref = load_evaluation(evaluation), load_evaluation(reference)
    if not is_real_only(ref):
        kind = (ref.get("train_set") or {}).get("kind")
        what = "pre-trained on other data" if kind == "real" else f"its training set is {kind!r}"
        raise SynthmedError(f"no relative Dice: the reference {_name(ref)} must be trained on real data only ({what})")
    found = differences(identity(run), identity(ref))
    if found:
        raise SynthmedError(f"no relative Dice: the reference {_name(ref)} differs from {_name(run)} in more than the "
                            f"training data (compared vs reference): {'; '.join(found)}")
    return dice_ratios(run, ref)


def relative_dice_table(evaluations: Sequence[Mapping[str, Any]], labels: Sequence[Mapping[str, Any]]
                        ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Relative Dice of every run that is not real-only, against its matched real-only run.

    Args:
        evaluations: one evaluation per run.
        labels: per run, the columns to carry (e.g. a study stage's labels).

    Returns:
        ``(matched, unmatched)``: ``matched`` has the labels, ``region`` (WT, TC, ET) and
        ``value`` (the ratio), one row per run and region; ``unmatched`` the labels and
        ``reason`` (the differences from the nearest real-only run, or why none could be
        compared) of each run without a reference. Several identical references: the first.
    """
    ids = []
    for evaluation in evaluations:
        try:
            ids.append(identity(evaluation))
        except SynthmedError as exc:
            ids.append(str(exc))
    references = [i for i, e in enumerate(evaluations) if is_real_only(e) and isinstance(ids[i], dict)]
    index: dict[str, int] = {}
    for i in references:
        index.setdefault(_key(ids[i]), i)
    matched, unmatched = [], []
    for i, evaluation in enumerate(evaluations):
        if is_real_only(evaluation):
            continue
        if isinstance(ids[i], str):
            unmatched.append({**labels[i], "reason": ids[i]})
            continue
        ref = index.get(_key(ids[i]))
        if ref is None or differences(ids[i], ids[ref]):  # preset unrecorded in one: compare field by field
            ref = next((j for j in references if not differences(ids[i], ids[j])), None)
        if ref is None:
            unmatched.append({**labels[i], "reason": _nearest(ids[i], [ids[j] for j in references])})
            continue
        ratios = dice_ratios(evaluation, evaluations[ref])
        matched += [{**labels[i], "region": r, "value": ratios[r]} for r in REGIONS]
    return pd.DataFrame(matched), pd.DataFrame(unmatched)


def _key(run: Mapping[str, Any]) -> str:
    return _canonical({k: v for k, v in run.items() if k != "preset"})


def _nearest(run: Mapping[str, Any], references: Sequence[Mapping[str, Any]]) -> str:
    if not references:
        return "no real-only run to compare with"
    closest = min((differences(run, ref) for ref in references), key=len)
    return "the closest real-only run differs in " + "; ".join(closest)


# ----------------------------------------------------------------------------- the results table


def all_subjects(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows trained on every real training subject (the pre-training curve's others left out)."""
    return frame[frame.subject_fraction.isna() | (frame.subject_fraction == 1.0)]


def generation_table(results: pd.DataFrame) -> pd.DataFrame:
    """The generation metrics, mean over rows: index ``(dataset, generator, features)``, a column
    per metric name (``fd``, ``kid_mean``, …); empty without fidelity rows."""
    rows = results[results.metric.str.contains("/", na=False) & ~results.metric.str.startswith("memorization/")]
    if rows.empty:
        return pd.DataFrame()
    rows = rows.assign(features=rows.metric.str.split("/").str[0], name=rows.metric.str.split("/", n=1).str[1])
    return rows.pivot_table(index=["dataset", "generator", "features"], columns="name", values="value",
                            aggfunc="mean")


def fd_ranks(ranks: pd.DataFrame) -> tuple[pd.Series, str]:
    """The FD rank column of :func:`~synthmed.study.analysis.rank_generators`' table (``domain``
    features first) and its feature space; an empty series and ``""`` without one."""
    columns = [c for c in ranks.columns if str(c).endswith("/fd")] if not ranks.empty else []
    if not columns:
        return pd.Series(dtype=float), ""
    column = "domain/fd" if "domain/fd" in columns else columns[0]
    return ranks[column], column.split("/", 1)[0]


def memorization_by_generator(stages: list[dict], results: pd.DataFrame) -> dict[tuple[str, str], dict[str, float]]:
    """``{(dataset, generator): {"fraction_above", "max", "threshold"}}`` from the memorization
    rows of ``results`` (the threshold from the stage's config when the row is missing)."""
    rows = results[results.metric.str.startswith("memorization/", na=False)] if not results.empty else results
    out: dict[tuple[str, str], dict[str, float]] = {}
    for (dataset, generator), sub in (rows.groupby(["dataset", "generator"]) if not rows.empty else []):
        out[(str(dataset), str(generator))] = sub.groupby(sub.metric.str.split("/", n=1).str[1])["value"].mean().to_dict()
    for record in stages:
        key = (str(record["labels"].get("dataset", "")), str(record["labels"].get("generator", "")))
        if record["kind"] == "memorization" and key in out and "threshold" not in out[key]:
            out[key]["threshold"] = record["config"].get("threshold")
    return out


# ----------------------------------------------------------------------------- ranks


def rank_generators(metrics: pd.DataFrame) -> pd.DataFrame:
    """Ranks of the generators per metric (1 = best), within each dataset and feature space.

    Args:
        metrics: indexed by ``(dataset, generator, features)``, one column per metric name
            (``fd``, ``kid_mean``, …); metrics not in :data:`RANKED` are left out.

    Returns:
        Indexed by ``(dataset, generator)``, one column ``<features>/<name>`` per ranked metric.
    """
    columns: dict[str, list[pd.Series]] = {}
    for (dataset, features), sub in metrics.groupby(level=["dataset", "features"], sort=False):
        sub = sub.droplevel(["dataset", "features"])
        for name in sub.columns:
            lower = RANKED.get(name)
            if lower is None or sub[name].isna().all():
                continue
            ranks = sub[name].rank(ascending=lower, method="min")
            ranks.index = pd.MultiIndex.from_product([[dataset], ranks.index], names=["dataset", "generator"])
            columns.setdefault(f"{features}/{name}", []).append(ranks)
    frame = pd.DataFrame({name: pd.concat(parts) for name, parts in columns.items()})
    if frame.empty:
        frame.index = pd.MultiIndex.from_tuples([], names=["dataset", "generator"])
    return frame.sort_index(level="dataset", sort_remaining=False)


def dice_ranks(dice: pd.Series) -> pd.Series:
    """Generators ranked by Dice (1 = highest) within each dataset; ``dice`` indexed by ``(dataset, generator)``."""
    return dice.groupby(level="dataset", group_keys=False).rank(ascending=False, method="min")


def rank_correlation(ranks: pd.DataFrame, dice_rank: pd.Series) -> pd.DataFrame:
    """Spearman's ρ between each metric's ranks and the Dice ranks, per dataset.

    Args:
        ranks: :func:`rank_generators`.
        dice_rank: :func:`dice_ranks`.

    Returns:
        Columns ``dataset, metric, rho, p, generators`` (generators with both ranks; ``rho``
        and ``p`` ``nan`` below :data:`MIN_GENERATORS`).
    """
    from scipy.stats import spearmanr

    rows = []
    for dataset in dict.fromkeys(ranks.index.get_level_values("dataset")):
        sub = ranks.xs(dataset, level="dataset")
        dice = dice_rank.xs(dataset, level="dataset") if dataset in dice_rank.index.get_level_values(
            "dataset") else pd.Series(dtype=float)
        for metric in sub.columns:
            both = [g for g in sub.index if g in dice.index and not math.isnan(sub.at[g, metric])]
            rho = p = math.nan
            if len(both) >= MIN_GENERATORS:
                rho, p = (float(x) for x in spearmanr(sub.loc[both, metric], dice.loc[both]))
            rows.append({"dataset": dataset, "metric": metric, "rho": rho, "p": p, "generators": len(both)})
    return pd.DataFrame(rows, columns=["dataset", "metric", "rho", "p", "generators"])
