"""The report's detail sections, after the summary: each ``write_*`` fills one
:class:`~synthmed.study.sections.Section` from the finished stages and the results table.

In :data:`~synthmed.study.report.SECTIONS` order: settings (presets and steps), generation
metrics (and, for 3D datasets, the volume metrics: 3D MS-SSIM of synthetic and real pairs and
slice consistency), rank tables, Dice and HD95 per region (mean ± sd over seeds), relative Dice
(synthetic / matched real-only), Spearman correlation of generation-metric ranks with Dice
ranks, Dice vs real fraction, the synthetic pre-training curve, memorization histograms and
closest-pair galleries, sample galleries (masks overlaid) and training curves (from each run's
TensorBoard scalars). The numbers come from :mod:`.analysis`, the figures from :mod:`.plots`.

Everything is grouped by dataset: each table's first column is ``dataset``, generators are
ranked and correlated within each dataset, and each figure is drawn per dataset, its caption
starting ``<dataset>: ``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from synthmed.study.analysis import all_subjects, dice_ranks, generation_table, rank_correlation, rank_generators
from synthmed.study.plots import curves_png, generator_curves_png, histogram_png, rendered, segmenter_curves_png
from synthmed.study.records import read_scalars
from synthmed.study.sections import Section, fmt, mean_sd
from synthmed.study.spec import PRETRAINED_TRAIN_SETS
from synthmed.study.stages import RESULT_JSON


#: generation metrics shown in the table, in this order (others, like sample counts, are left out).
SHOWN = ("fd", "fd_train", "relative_fd", "kid_mean", "kid_std", "is_mean", "precision", "recall", "density", "coverage",
         "ms_ssim")
#: the volume metrics (3D datasets) shown in their own table: results name → column title.
VOLUME_SHOWN = {"ms_ssim": "MS-SSIM", "ms_ssim_real": "MS-SSIM real",
                "slice_consistency.correlation": "slice r", "slice_consistency.correlation_real": "slice r real",
                "slice_consistency.correlation_ratio": "slice r ratio", "slice_consistency.difference": "slice Δ",
                "slice_consistency.difference_real": "slice Δ real",
                "slice_consistency.difference_ratio": "slice Δ ratio",
                "slice_consistency.difference_wasserstein": "Δ Wasserstein",
                "slice_consistency.difference_ks": "Δ KS"}
#: a fidelity result of volumes has this row (slices never do).
VOLUME_MARK = "slice_consistency.volumes"
#: the columns a group of runs is told apart by in the segmentation tables.
GROUP = ["dataset", "generator", "segmenter", "train_set", "augmentation", "real_fraction", "subject_fraction"]


def _labels(frame: pd.DataFrame) -> pd.DataFrame:
    """Evaluate rows with printable group labels (empty generator / real fraction as '—')."""
    frame = frame.copy()
    frame["dataset"] = frame["dataset"].fillna("—")
    frame["generator"] = frame["generator"].fillna("—").replace("", "—")
    frame["real_fraction"] = frame["real_fraction"].map(fmt)
    frame["subject_fraction"] = frame["subject_fraction"].map(fmt)
    frame["augmentation"] = frame["augmentation"].astype(str)
    return frame


def _regions(frame: pd.DataFrame) -> list[str]:
    """The regions among ``frame``'s rows, in WT, TC, ET order."""
    return [r for r in ("WT", "TC", "ET") if r in set(frame.region)]


def _by_dataset(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """``frame``'s rows per dataset, datasets in order of appearance."""
    return [(str(d), sub) for d, sub in frame.groupby(frame["dataset"].fillna("—"), sort=False)]


def _segmenter_line(labels: dict) -> str:
    """A train stage's line in the training-curve plot: train set, generator and what differs."""
    name = " ".join(str(x) for x in (labels.get("train_set"), labels.get("generator")) if x)
    if labels.get("subject_fraction", 1.0) != 1.0:
        name += f" subjects={labels['subject_fraction']:g}"
    if labels.get("train_set") == "synthetic+real" and labels.get("real_fraction") is not None:
        name += f" real={labels['real_fraction']:g}"
    return name + ("" if labels.get("augmentation", True) else " no-aug")


def write_settings(stages: list[dict], section: Section) -> None:
    """The stages' models, presets and steps (one row per dataset × stage kind × name), and the seeds."""
    rows = []
    for record in stages:
        c, labels = record["config"], record["labels"]
        dataset = str(labels.get("dataset", ""))
        if record["kind"] == "encoder":
            rows.append({"dataset": dataset, "stage": "encoder", "name": "domain", "model": "domain encoder",
                         "preset": "—", "steps": fmt(c.get("steps"))})
        if record["kind"] not in ("fit", "train", "sample", "classify"):
            continue
        steps = c.get("steps") if record["kind"] == "sample" else (c.get("train_overrides") or {}).get("steps")
        preset = c.get("preset") or "—"
        name = {"train": labels.get("segmenter"), "classify": labels.get("classifier")}.get(record["kind"],
                                                                                          labels.get("generator"))
        model = c.get("model", "")
        if record["kind"] == "sample":
            model = f"{c.get('n')} samples, {c.get('sampler') or 'default sampler'}"
        if record["kind"] == "classify":
            model = f"{model} {c.get('mode')} ({c.get('task')})"
        rows.append({"dataset": dataset, "stage": record["kind"], "name": name or "", "model": model,
                     "preset": preset, "steps": fmt(steps)})
    seeds = sorted({r["labels"]["seed"] for r in stages if r["kind"] == "train" and "seed" in r["labels"]})
    section.text(f"{len(stages)} finished stages; segmenter seeds: {', '.join(map(str, seeds)) or '—'}.")
    table = pd.DataFrame(rows, columns=["dataset", "stage", "name", "model", "preset", "steps"]).drop_duplicates()
    section.table(table.sort_values(["dataset", "stage", "name"], kind="stable").reset_index(drop=True))


def write_generation(results: pd.DataFrame, section: Section) -> pd.DataFrame:
    """The generation-metric table (one row per dataset × generator × feature space); returned for ranking."""
    table = generation_table(results)
    if table.empty:
        section.text("No finished fidelity stages.")
        return table
    shown = table[[c for c in SHOWN if c in table.columns] or list(table.columns)]
    section.table(shown.reset_index().map(fmt))
    write_volumes(table, section)
    return shown


def write_volumes(table: pd.DataFrame, section: Section) -> None:
    """The volume metrics of :func:`~synthmed.study.analysis.generation_table`'s rows of 3D datasets
    (those with slice-consistency results; :data:`VOLUME_SHOWN`), with what they mean; nothing for
    slices, so a 2D study's report is without it."""
    if VOLUME_MARK not in table.columns:
        return
    volumes = table[table[VOLUME_MARK].notna()]
    section.text("Volumes (3D datasets). FD, KID, IS, precision/recall and density/coverage above are in 2.5D: the "
                 "feature extractor on each volume's central axial, coronal and sagittal planes, concatenated. "
                 "MS-SSIM is 3D, between random pairs of synthetic volumes, and beside it between pairs of real "
                 "test volumes of different patients (lower = more diverse). Slice consistency along the axial "
                 "axis: slice r is the mean Pearson correlation of adjacent slices (pairs with a constant slice "
                 "left out; per channel, then the mean), slice Δ the mean absolute difference between adjacent "
                 "slices; ratios are synthetic / real, and a slice r ratio near 1 means as slice-consistent as the "
                 "real volumes; Wasserstein and KS compare the distributions of the slice pairs' differences.")
    columns = [c for c in VOLUME_SHOWN if c in volumes.columns]
    section.table(volumes[columns].rename(columns=VOLUME_SHOWN).reset_index().map(fmt))


def write_ranks(table: pd.DataFrame, section: Section) -> pd.DataFrame:
    """Generators ranked per metric (1 = best) within each dataset and feature space (one row per
    dataset × generator); returned for the correlation."""
    ranks = rank_generators(table) if not table.empty else pd.DataFrame()
    if ranks.empty:
        section.text("No generation metrics to rank.")
        return pd.DataFrame()
    section.text("1 = best, within each dataset; lower is better for FD, KID and HD95, higher for IS, precision, "
                 "recall, density, coverage and Dice; ties share the best rank.")
    section.table(ranks.reset_index().map(lambda v: fmt(int(v)) if isinstance(v, float) and v == v else fmt(v)))
    return ranks


def write_segmentation(results: pd.DataFrame, section: Section) -> None:
    """Dice and HD95 per region, mean ± sd over seeds, one row per group of runs (:data:`GROUP`)."""
    rows = results[results.metric.isin(["dice", "hd95"])]
    if rows.empty:
        section.text("No finished evaluate stages.")
        return
    rows = _labels(rows)
    summary = rows.groupby([*GROUP, "metric", "region"], dropna=False)["value"].apply(mean_sd).unstack(
        ["metric", "region"])
    summary.columns = [f"{m} {r}" for m, r in summary.columns]
    order = [f"{m} {r}" for m in ("dice", "hd95") for r in ("WT", "TC", "ET") if f"{m} {r}" in summary.columns]
    section.text("Mean ± sd over seeds, on the real test patients.")
    section.table(summary[order + [c for c in summary.columns if c not in order]].reset_index())


def write_relative(matched: pd.DataFrame, unmatched: pd.DataFrame, section: Section) -> None:
    """The relative Dice table of :func:`~synthmed.study.analysis.relative_dice_table`'s
    ``matched`` runs, and the ``unmatched`` ones listed with why."""
    if matched.empty and unmatched.empty:
        section.text("Needs both real-only and synthetic runs.")
        return
    section.text("Dice of each run trained on synthetic data (or pre-trained on it) divided by the Dice of the "
                 "real-only run that matches it in everything but the training data: dataset and test patients, "
                 "segmenter, preset and settings, steps, augmentation, seed and share of real subjects; "
                 "mean ± sd over seeds.")
    if not matched.empty:
        table = _labels(matched).groupby([*GROUP, "region"], dropna=False)["value"].apply(mean_sd).unstack("region")
        section.table(table[[r for r in ("WT", "TC", "ET") if r in table.columns]].reset_index())
    if not unmatched.empty:
        groups = []
        for reason, sub in unmatched.groupby("reason", sort=False):
            runs = {}
            for labels in sub.to_dict("records"):
                name = f"{labels.get('dataset')}: {labels.get('segmenter')} {_segmenter_line(labels)}"
                runs.setdefault(name, []).append(str(labels.get("seed")))
            names = ", ".join(f"{name} (seeds {' '.join(seeds)})" for name, seeds in runs.items())
            groups.append(f"{names}: {reason}")
        section.text(f"No relative Dice for {len(unmatched)} run(s) without a matched real-only run — "
                     + "; ".join(groups) + ".")


def write_correlation(results: pd.DataFrame, ranks: pd.DataFrame, section: Section) -> None:
    """Spearman's ρ of each generation metric's ranks with the generators' synthetic-only Dice ranks, per dataset."""
    dice = results[(results.metric == "dice") & (results.train_set == "synthetic")]
    if dice.empty:
        dice = results[(results.metric == "dice") & (results.train_set != "real")]
    section.text("Spearman ρ between each generation metric's ranks and the generators' Dice ranks within each "
                 "dataset (mean Dice over regions, segmenters and seeds, trained on synthetic data).")
    if ranks.empty:
        section.text("n/a: no ranked generation metrics or no Dice of synthetic runs.")
        return
    table = rank_correlation(ranks, dice_ranks(dice.groupby(["dataset", "generator"])["value"].mean()))
    few = table[table.rho.isna()]
    if not few.empty:
        counts = few.groupby("dataset", sort=False)["generators"].max()
        section.text("n/a: needs at least 3 generators with both (" + ", ".join(
            f"{dataset} has {n}" for dataset, n in counts.items()) + ").")
    section.table(table.assign(rho=table.rho.map(lambda v: "n/a" if math.isnan(v) else fmt(v)),
                               p=table.p.map(lambda v: "n/a" if math.isnan(v) else fmt(v))))


def write_real_fraction(results: pd.DataFrame, section: Section) -> None:
    """Per dataset, mean Dice against the share of real data, a line per generator and segmenter."""
    sweeps = all_subjects(results[results.metric == "dice"])
    if sweeps[(sweeps.train_set == "synthetic+real") & sweeps.real_fraction.notna()].empty:
        section.text("No real-fraction sweep in this study (real_fractions is empty).")
        return
    section.text("Mean Dice over seeds against the share of real data (0 = synthetic only, 1 = real only).")
    for dataset, dice in _by_dataset(sweeps):
        sweep = dice[(dice.train_set == "synthetic+real") & dice.real_fraction.notna()]
        if sweep.empty:
            continue
        curves: dict[str, dict[str, pd.Series]] = {}
        for region in _regions(sweep):
            lines = curves.setdefault(region, {})
            for (gen, seg), sub in sweep[sweep.region == region].groupby(["generator", "segmenter"]):
                ends = dice[(dice.region == region) & (dice.segmenter == seg) & (
                    ((dice.train_set == "synthetic") & (dice.generator == gen)) | (dice.train_set == "real"))]
                lines[f"{gen} / {seg}"] = pd.concat([sub, ends]).groupby("real_fraction")["value"].mean().sort_index()
        section.image(curves_png(curves, "real fraction"), f"{dataset}: Dice vs real fraction")


def write_pretraining(results: pd.DataFrame, section: Section) -> None:
    """Per dataset, Dice against the share of real subjects, from scratch vs pre-trained on synthetic
    samples (one line per arm: supervised, ssl), and the gain table (a ``pretraining`` column names the arm)."""
    arm = {train_set: mode for mode, train_set in PRETRAINED_TRAIN_SETS.items()}  # train set → mode
    dice = results[(results.metric == "dice") & results.train_set.isin(["real", *arm])]
    fractions = set(dice[dice.train_set.isin(list(arm))].subject_fraction.dropna())
    if not fractions:
        section.text("No pre-training curve in this study (pretraining.subject_fractions is empty).")
        return
    dice = dice[dice.subject_fraction.isin(fractions | {1.0})]  # scratch at 1: the plain real-only run
    section.text("Each segmenter pre-trained on a generator's synthetic samples — supervised (their images and "
                 "masks, the segmentation loss) or ssl (self-supervised on their images alone: denoising "
                 "in-painting) — then fine-tuned on a share of the real training subjects, against the same "
                 "segmenter trained from scratch on that share; mean Dice over seeds.")
    for dataset, rows in _by_dataset(dice):
        curves: dict[str, dict[str, pd.Series]] = {}
        for region in _regions(rows):
            lines = curves.setdefault(region, {})
            for (train_set, gen, seg), sub in rows[rows.region == region].groupby(
                    ["train_set", rows.generator.fillna(""), "segmenter"]):
                name = f"scratch / {seg}" if train_set == "real" else f"{arm[train_set]} on {gen} / {seg}"
                lines[name] = sub.groupby("subject_fraction")["value"].mean().sort_index()
        section.image(curves_png(curves, "share of real training subjects"),
                      f"{dataset}: Dice vs share of real subjects")
    keys = ["dataset", "segmenter", "augmentation", "seed", "subject_fraction", "region"]
    scratch = dice[dice.train_set == "real"][keys + ["value"]].rename(columns={"value": "scratch"})
    gain = dice[dice.train_set.isin(list(arm))].merge(scratch, on=keys)
    gain = _labels(gain.assign(value=gain.value - gain.scratch, pretraining=gain.train_set.map(arm)))
    table = gain.groupby(["dataset", "generator", "pretraining", "segmenter", "augmentation", "subject_fraction",
                          "region"])["value"].apply(mean_sd).unstack("region")
    section.text("Dice gain of pre-training (pre-trained − scratch) per arm, mean ± sd over seeds.")
    section.table(table[_regions(gain)].reset_index())


def write_memorization(stages: list[dict], results: pd.DataFrame, section: Section, closest: int) -> None:
    """The memorization table, and per generator its histogram and its ``closest`` closest pairs."""
    rows = results[results.metric.str.startswith("memorization/", na=False)]
    mem = [r for r in stages if r["kind"] == "memorization"]
    if rows.empty and not mem:
        section.text("No finished memorization stages.")
        return
    if not rows.empty:
        keep = [m for m in ("max", "mean", "median", "fraction_above", "n_above", "threshold")
                if f"memorization/{m}" in set(rows.metric)]
        table = rows.assign(name=rows.metric.str.split("/", n=1).str[1]).pivot_table(
            index=["dataset", "generator"], columns="name", values="value", aggfunc="mean")
        section.table(table[keep or list(table.columns)].reset_index().map(fmt))
    finished = {r["key"]: r for r in stages}
    for record in sorted(mem, key=lambda r: (str(r["labels"].get("dataset")), str(r["labels"].get("generator")))):
        gen = f"{record['labels'].get('dataset', '')}: {record['labels'].get('generator', '')}"
        result_path = record["folder"] / RESULT_JSON
        hist = json.loads(result_path.read_text()).get("histogram") if result_path.is_file() else None
        if hist:
            section.image(histogram_png(hist, record["config"].get("threshold"), gen), f"{gen}: memorization histogram")
        inputs = {finished[k]["kind"]: finished[k]["folder"] for k in record.get("inputs", []) if k in finished}
        if (record["folder"] / "memorization.json").is_file() and {"prepare", "sample"} <= inputs.keys():
            _closest_pairs(record["folder"] / "memorization.json", inputs["sample"] / "store",
                           inputs["prepare"] / "store", gen, section, closest)


def _closest_pairs(audit_json: Path, synthetic: Path, train: Path, gen: str, section: Section, top_k: int) -> None:
    """The ``top_k`` synthetic samples closest to a training sample, beside it (the audit of the
    ``synthetic`` store against the ``train`` store)."""
    from synthmed.data.store import Store
    from synthmed.evaluate import MemorizationAudit, plot_gallery

    try:
        result = MemorizationAudit.load(audit_json)
        stores = Store.open(synthetic), Store.open(train)
        png = rendered(lambda path: plot_gallery(result, *stores, path, top_k=top_k))
    except Exception as exc:  # noqa: BLE001 — a broken store must not stop the report
        section.text(f"{gen}: no closest-pair gallery ({exc}).")
        return
    section.image(png, f"{gen}: closest pairs (synthetic | nearest training sample | difference)")


def write_galleries(stages: list[dict], section: Section, n: int) -> None:
    """``n`` samples of each real and synthetic store, every channel, the mask overlaid on the last."""
    from synthmed.data.inspect import render_grid
    from synthmed.data.store import Store

    sources = []
    for prepare in (r for r in stages if r["kind"] == "prepare"):
        dataset = prepare["labels"].get("dataset", "")
        sources.append((f"{dataset}: real", prepare))
        sources += sorted(((f"{dataset}: {r['labels'].get('generator', '')}", r) for r in stages
                           if r["kind"] == "sample" and r["labels"].get("dataset", "") == dataset), key=lambda x: x[0])
    if not sources:
        section.text("No finished prepare or sample stages.")
        return
    section.text("Each channel of a few samples, the tumour mask overlaid on the last.")
    for name, record in sources:
        try:
            png = rendered(lambda path: render_grid(Store.open(record["folder"] / "store"), path, n=n))
        except Exception as exc:  # noqa: BLE001 — a broken store must not stop the report
            section.text(f"{name}: no gallery ({exc}).")
            continue
        section.image(png, f"{name} samples")


def write_training_curves(stages: list[dict], section: Section) -> None:
    """Generator losses per step (a panel per generator), and per segmenter its training loss and
    validation Dice per step, mean over seeds (a line per train set)."""
    by_dataset: dict[str, dict[str, dict[str, pd.Series]]] = {}  # dataset → generator → loss → curve
    for record in sorted((r for r in stages if r["kind"] == "fit"), key=lambda r: str(r["labels"].get("generator"))):
        losses = {tag.split("/", 1)[1]: points for tag, points in read_scalars(record["folder"] / "run").items()
                  if tag.startswith("train/") and tag != "train/samples_per_s"}
        if losses:
            dataset = str(record["labels"].get("dataset", ""))
            by_dataset.setdefault(dataset, {})[str(record["labels"].get("generator", ""))] = losses
    segmenters: dict[str, dict[str, dict[str, list[pd.Series]]]] = {}  # "dataset: segmenter" → tag → line → runs
    for record in (r for r in stages if r["kind"] == "train"):
        scalars = read_scalars(record["folder"] / "run")
        name = f"{record['labels'].get('dataset', '')}: {record['labels'].get('segmenter', '')}"
        curves = segmenters.setdefault(name, {"train/loss": {}, "val/dice": {}})
        for tag, by_line in curves.items():
            if tag in scalars:
                by_line.setdefault(_segmenter_line(record["labels"]), []).append(scalars[tag])
    segmenters = {seg: curves for seg, curves in segmenters.items() if any(curves.values())}
    if not by_dataset and not segmenters:
        section.text("No training curves: no finished fit or train stage logged TensorBoard scalars.")
        return
    if by_dataset:
        section.text("Generator training losses per step.")
    for dataset, generators in sorted(by_dataset.items()):
        section.image(generator_curves_png(generators), f"{dataset}: generator training curves")
    for seg, curves in sorted(segmenters.items()):
        means = {tag: {name: pd.concat(series, axis=1).mean(axis=1) for name, series in sorted(by_line.items())}
                 for tag, by_line in curves.items()}
        png = segmenter_curves_png(seg, means)
        section.text(f"{seg}: training loss and validation Dice per step, mean over seeds.")
        section.image(png, f"{seg} training curves")
