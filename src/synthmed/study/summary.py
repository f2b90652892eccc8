"""The report's first section, the answer: one row per dataset × generator, before the details.

Columns of the table (:func:`summary_table`):

- ``relative WT Dice, synthetic only`` and ``…, synthetic+real (<mix>)``: the WT Dice of a
  segmenter trained on the generator's samples (alone, or with the real training data) over
  the Dice of its matched real-only run (:func:`~synthmed.study.analysis.relative_dice_table`),
  on the real test patients: mean ± sd over seeds with the number of runs ``n`` (the value
  alone for one run). Pre-training-curve runs (a share of the real subjects) are left out. With
  a real-fraction sweep, the mix shown is all of both stores when the study has it, else the
  real fraction nearest 0.5 (named in the header).
- ``FD rank (<features>)``: the generator's rank by Fréchet distance among the dataset's
  generators (:func:`~synthmed.study.analysis.rank_generators`, :func:`~synthmed.study.analysis.fd_ranks`;
  1 = closest to the real test patients), in the ``domain`` feature space when the study has it.
- ``memorized``: the share of synthetic samples whose maximum correlation with a training
  sample is above the memorization threshold; ``max correlation``: the largest of them.

A study with several segmenters or augmentation settings gets one row per generator and each
of them (``segmenter`` / ``augmentation`` columns), never an average of unlike runs. Anything a
generator lacks (no segmentation, fidelity or memorization stage finished) shows as ``—``.

Below the table: the real-only WT Dice the ratios are relative to, and per dataset one figure
with a row per generator, real training samples beside its synthetic ones
(:func:`~synthmed.data.inspect.render_side_by_side`). Above it, the study's scale
(:func:`describe_scale`): the presets, steps, number of patients and image side, a warning
when it is smaller than the reference study's.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from synthmed.study.analysis import all_subjects, fd_ranks, memorization_by_generator
from synthmed.study.plots import rendered
from synthmed.study.sections import MISSING, Section, fmt, mean_sd

#: a study whose generators or segmenters train fewer steps than this, or use another preset than
#: ``paper``, is flagged as smaller than the reference study.
FEW_STEPS = 1000
#: the reference study's scale, for the warning.
REFERENCE_SCALE = "paper presets, hundreds of BraTS patients, 256 px"
SYNTHETIC = "relative WT Dice, synthetic only"
MIXED = "relative WT Dice, synthetic+real"
MEMORIZED = "memorized"
MAX_CORRELATION = "max correlation"


# ----------------------------------------------------------------------------- scale


def _case_counts(store_path: Path) -> tuple[dict[str, int], str] | None:
    """``({split: patients}, side)`` of a prepared store (``None`` when it cannot be opened); patients
    are its distinct ``subject_id`` values (a longitudinal subject's visits count once)."""
    from synthmed.data.store import Store
    from synthmed.errors import SynthmedError

    try:
        store = Store.open(store_path)
    except SynthmedError:
        return None
    counts = store.samples.groupby("split")["subject_id"].nunique()
    side = store.spatial_shape[-1]
    return {str(k): int(v) for k, v in counts.items()}, f"{side} px" if store.dims == 2 else f"{side}³ voxels"


def _data_scale(record: dict) -> str:
    """``"<dataset>: 16 phantom patients (12 train + 4 test), 32 px"`` of a ``prepare`` stage."""
    config = record["config"]
    phantom = config.get("phantom")
    kind = "phantom patients" if phantom else "patients"
    found = _case_counts(record["folder"] / "store")
    if found is not None:
        counts, side = found
        split = " + ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda x: x[0] != "train"))
        patients = f"{sum(counts.values())} {kind} ({split})"
    else:
        patients = f"{phantom['cases']} {kind}" if phantom else f"{kind} of {config.get('path')}"
        side = f"{config.get('size')} px"
    return f"{record['labels'].get('dataset', '')}: {patients}, {side}"


def describe_scale(stages: list[dict]) -> tuple[str | None, bool]:
    """``(scale, small)``: the study's scale in words — presets, training steps where the spec
    sets them, and per dataset the number of patients (train + test) and the image side, e.g.
    ``"laptop preset, 400 training steps; phantom: 16 phantom patients (12 train + 4 test), 32 px"``
    — and whether any generator or segmenter is below the reference study's scale (a preset
    other than ``paper``, or fewer than :data:`FEW_STEPS` steps). ``(None, False)`` without
    finished prepare, fit or train stages."""
    presets: dict[str, set[str]] = {"fit": set(), "train": set()}
    steps: set[int] = set()
    for record in stages:
        if record["kind"] in presets:
            presets[record["kind"]].add(str(record["config"].get("preset") or MISSING))
            value = (record["config"].get("train_overrides") or {}).get("steps")
            if value is not None:
                steps.add(int(value))
    prepares = sorted((r for r in stages if r["kind"] == "prepare"), key=lambda r: str(r["labels"].get("dataset")))
    used = presets["fit"] | presets["train"]
    if not used and not prepares:
        return None, False
    parts = []
    if len(used) == 1:
        parts.append(f"{next(iter(used))} preset")
    elif used:
        parts.append(", ".join(f"{who} presets {', '.join(sorted(presets[kind])) or MISSING}"
                               for kind, who in (("fit", "generator"), ("train", "segmenter"))))
    if steps:
        parts.append(f"{min(steps)}–{max(steps)} training steps" if len(steps) > 1 else f"{min(steps)} training steps")
    scale = ", ".join(parts)
    if prepares:
        scale = "; ".join(([scale] if scale else []) + [_data_scale(r) for r in prepares])
    small = bool(used - {"paper"}) or any(s < FEW_STEPS for s in steps)
    return scale, small


# ----------------------------------------------------------------------------- the table


def _generators(stages: list[dict], results: pd.DataFrame) -> list[tuple[str, str]]:
    """Every ``(dataset, generator)`` of the study's finished stages and results, sorted."""
    pairs = {(str(r["labels"].get("dataset", "")), str(r["labels"]["generator"])) for r in stages
             if r["kind"] in ("fit", "sample", "fidelity", "memorization") and r["labels"].get("generator")}
    if not results.empty:
        named = results[results.generator.notna() & (results.generator.astype(str) != "")]
        pairs |= {(str(d), str(g)) for d, g in zip(named.dataset, named.generator)}
    return sorted(pairs)


def _mix(mixed: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The synthetic+real runs the summary shows and their name: all of both stores (no real
    fraction) when there are such runs, else the real fraction nearest 0.5 (no name without runs)."""
    if mixed.empty:
        return mixed, ""
    fractions = mixed.real_fraction
    if fractions.isna().any():
        return mixed[fractions.isna()], "all of both"
    nearest = min(set(fractions), key=lambda f: (abs(f - 0.5), f))
    return mixed[fractions == nearest], f"real fraction {nearest:g}"


def _spread(values: pd.Series) -> str:
    """``mean ± sd (n=k)`` of the non-NaN ``values`` (the value alone with ``n=1``), ``—`` without any."""
    n = int(values.notna().sum())
    return f"{mean_sd(values)} (n={n})" if n else MISSING


def _memorized(values: dict[str, float]) -> str:
    share, threshold = values.get("fraction_above"), values.get("threshold")
    if share is None or math.isnan(share):
        return MISSING
    return f"{100 * share:.3g} % above {threshold:g}" if threshold is not None else f"{100 * share:.3g} %"


def summary_table(stages: list[dict], results: pd.DataFrame, matched: pd.DataFrame, ranks: pd.DataFrame
                  ) -> pd.DataFrame:
    """The summary table (see the module docstring), cells as text; no rows without generators.

    Args:
        stages: the finished stages (:func:`~synthmed.study.records.finished_stages`).
        results: the results table (``results.csv``).
        matched: relative Dice of the matched runs (:func:`~synthmed.study.analysis.relative_dice_table`).
        ranks: generator ranks (:func:`~synthmed.study.analysis.rank_generators`), possibly empty.
    """
    wt = matched[matched.region == "WT"] if not matched.empty else pd.DataFrame(
        columns=["dataset", "generator", "segmenter", "augmentation", "train_set", "real_fraction", "value"])
    if "subject_fraction" in wt.columns:
        wt = all_subjects(wt)
    mixed, mix = _mix(wt[wt.train_set == "synthetic+real"])
    runs = pd.concat([wt[wt.train_set == "synthetic"], mixed]) if not wt.empty else wt
    extra = [c for c in ("segmenter", "augmentation") if c in runs.columns and runs[c].astype(str).nunique() > 1]
    fd, features = fd_ranks(ranks)
    memorization = memorization_by_generator(stages, results)
    rows = []
    for dataset, generator in _generators(stages, results):
        mine = runs[(runs.dataset.astype(str) == dataset) & (runs.generator.astype(str) == generator)]
        combos = mine[extra].astype(str).drop_duplicates().to_dict("records") if extra and not mine.empty else [{}]
        rank = fd.get((dataset, generator), math.nan) if not fd.empty else math.nan
        of = int(fd.xs(dataset, level="dataset").notna().sum()) if not math.isnan(rank) else 0
        mem = memorization.get((dataset, generator), {})
        for combo in combos:
            sub = mine
            for column, value in combo.items():
                sub = sub[sub[column].astype(str) == value]
            rows.append({"dataset": dataset, "generator": generator, **{c: combo.get(c, MISSING) for c in extra},
                         SYNTHETIC: _spread(sub[sub.train_set == "synthetic"]["value"]),
                         f"{MIXED} ({mix})" if mix else MIXED: _spread(sub[sub.train_set == "synthetic+real"]["value"]),
                         f"FD rank ({features})" if features else "FD rank": f"{int(rank)} of {of}" if of else MISSING,
                         MEMORIZED: _memorized(mem), MAX_CORRELATION: fmt(mem.get("max"))})
    return pd.DataFrame(rows)


def _real_only(results: pd.DataFrame) -> list[str]:
    """``"<dataset> (<segmenter>): real-only WT Dice m ± sd (n=k)"`` per dataset and segmenter."""
    if results.empty:
        return []
    rows = results[(results.metric == "dice") & (results.region == "WT") & (results.train_set == "real")]
    rows = all_subjects(rows)
    return [f"{dataset} ({segmenter}): real-only WT Dice {_spread(sub['value'])}"
            for (dataset, segmenter), sub in rows.groupby(["dataset", "segmenter"], sort=True)]


# ----------------------------------------------------------------------------- the section


def _side_by_side(stages: list[dict], dataset: str, n: int) -> bytes | None:
    """PNG of the dataset's real training samples beside each generator's (``None`` without a
    real store or any synthetic one)."""
    from synthmed.data.inspect import render_side_by_side
    from synthmed.data.store import Store

    real = next((r for r in stages if r["kind"] == "prepare" and str(r["labels"].get("dataset", "")) == dataset), None)
    samples = sorted((str(r["labels"].get("generator", "")), r) for r in stages
                     if r["kind"] == "sample" and str(r["labels"].get("dataset", "")) == dataset)
    if real is None or not samples:
        return None
    return rendered(lambda path: render_side_by_side(Store.open(real["folder"] / "store"),
                                                     [(name, Store.open(r["folder"] / "store")) for name, r in samples],
                                                     path, n=n))


def write_summary(stages: list[dict], results: pd.DataFrame, matched: pd.DataFrame, ranks: pd.DataFrame,
                  section: Section, *, samples: int = 3) -> None:
    """Fill ``section`` with the scale, the summary table, the real-only reference and the
    side-by-side figures (``samples`` real and synthetic samples per generator)."""
    scale, small = describe_scale(stages)
    if scale and small:
        section.warning(f"Small scale — {scale}. Smaller than the reference study ({REFERENCE_SCALE}): the "
                        "numbers measure these models at this scale and may not carry over to full size.")
    elif scale:
        section.text(f"Scale: {scale}.")
    table = summary_table(stages, results, matched, ranks)
    if table.empty:
        section.text("No generator has finished a stage yet.")
        return
    section.text("Per generator: WT Dice of a segmenter trained on its samples relative to the matched real-only "
                 "run (real test patients; mean ± sd over seeds, n runs), its rank by FD (1 = closest to the real "
                 "data) and memorization (share of samples above the threshold, maximum correlation with a "
                 "training sample). Details follow.")
    section.table(table)
    reference = _real_only(results)
    if reference:
        section.text("; ".join(reference) + ".")
    for dataset in dict.fromkeys(table.dataset):
        try:
            png = _side_by_side(stages, dataset, samples)
        except Exception as exc:  # noqa: BLE001 — a broken store must not stop the report
            section.text(f"{dataset}: no real vs synthetic samples ({exc}).")
            continue
        if png is not None:
            section.image(png, f"{dataset}: real training samples (left) beside each generator's synthetic "
                               "samples (right), mask overlaid")
