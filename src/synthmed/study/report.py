"""The study report: ``STUDY/report.md`` and a self-contained ``STUDY/report.html``.

Built from the study folder alone — the finished stages' ``stage.json`` / ``result.json`` /
stores and ``results.csv`` — so it needs neither the YAML nor a rerun. Sections (each an
``<h2 id=…>`` in the HTML and a ``##`` heading in Markdown, in :data:`SECTIONS` order): the
summary first (:mod:`.summary`: the study's scale, one row per generator — relative WT Dice,
FD rank, memorization — and real beside synthetic samples), then the details: settings
(presets and steps), generation metrics, rank tables, Dice and HD95 per region (mean ± sd
over seeds), relative Dice (synthetic / matched real-only), Spearman correlation of
generation-metric ranks with Dice ranks, Dice vs real fraction, the synthetic pre-training
curve, memorization histograms and closest-pair galleries, sample galleries (masks overlaid)
and training curves (from each run's TensorBoard scalars). Images are embedded as base64 PNG data URIs in both files: nothing
external is referenced.

Everything is grouped by dataset: each table's first column is ``dataset`` (a study of two
datasets has one rank-table row per dataset × generator), generators are ranked and
correlated within each dataset, and each figure is drawn per dataset, its caption starting
``<dataset>: ``. Ranks, relative Dice and rank correlations come from :mod:`.analysis`.

Rebuilding is skipped when nothing it reads has changed: ``.report.json`` keeps a
fingerprint of the finished stages, ``results.csv``, the options and the report modules' code.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthmed.atomic import atomic_file
from synthmed.study.analysis import dice_ranks, rank_correlation, rank_generators, relative_dice_table
from synthmed.study.plan import DONE_JSON, STAGE_JSON, STAGES_DIR
from synthmed.study.results import COLUMNS, RESULTS_CSV
from synthmed.study.sections import Section, fmt, mean_sd
from synthmed.study.stages import RESULT_JSON
from synthmed.study.summary import write_summary

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
REPORT_CACHE = ".report.json"
#: the modules (in this folder) whose code the report's fingerprint covers.
REPORT_CODE = ("report.py", "summary.py", "sections.py")

#: (id, title) of each section, in order.
SECTIONS = (
    ("summary", "Summary"),
    ("settings", "Settings"),
    ("generation-metrics", "Generation metrics"),
    ("rank-tables", "Rank tables"),
    ("segmentation", "Dice and HD95 per region"),
    ("relative-dice", "Relative Dice"),
    ("rank-correlation", "Rank correlation of generation metrics with Dice"),
    ("real-fraction", "Dice vs real fraction"),
    ("pretraining", "Synthetic pre-training curve"),
    ("memorization", "Memorization"),
    ("galleries", "Sample galleries"),
    ("training-curves", "Training curves"),
)

#: generation metrics shown in the table, in this order (others, like sample counts, are left out).
SHOWN = ("fd", "fd_train", "relative_fd", "kid_mean", "kid_std", "is_mean", "precision", "recall", "density", "coverage",
         "ms_ssim")


# ----------------------------------------------------------------------------- reading the study


def finished_stages(out: str | Path) -> list[dict]:
    """``stage.json`` records of the finished stages in ``out`` (with ``folder`` added)."""
    records = []
    root = Path(out) / STAGES_DIR
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if folder.name.startswith(".") or not (folder / DONE_JSON).is_file() or not (folder / STAGE_JSON).is_file():
            continue
        record = json.loads((folder / STAGE_JSON).read_text())
        record["folder"] = folder
        records.append(record)
    return records


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


def all_subjects(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows trained on every real training subject (the pre-training curve's others left out)."""
    return frame[frame.subject_fraction.isna() | (frame.subject_fraction == 1.0)]


def _png(fig) -> bytes:  # noqa: ANN001
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def _labels(frame: pd.DataFrame) -> pd.DataFrame:
    """Evaluate rows with printable group labels (empty generator / real fraction as '—')."""
    frame = frame.copy()
    frame["dataset"] = frame["dataset"].fillna("—")
    frame["generator"] = frame["generator"].fillna("—").replace("", "—")
    frame["real_fraction"] = frame["real_fraction"].map(fmt)
    frame["subject_fraction"] = frame["subject_fraction"].map(fmt)
    frame["augmentation"] = frame["augmentation"].astype(str)
    return frame


GROUP = ["dataset", "generator", "segmenter", "train_set", "augmentation", "real_fraction", "subject_fraction"]


# ----------------------------------------------------------------------------- sections


def _settings(stages: list[dict], section: Section) -> None:
    rows = []
    for record in stages:
        c, labels = record["config"], record["labels"]
        dataset = str(labels.get("dataset", ""))
        if record["kind"] == "encoder":
            rows.append({"dataset": dataset, "stage": "encoder", "name": "domain", "model": "domain encoder",
                         "preset": "—", "steps": fmt(c.get("steps"))})
        if record["kind"] not in ("fit", "train", "sample"):
            continue
        steps = c.get("steps") if record["kind"] == "sample" else (c.get("train_overrides") or {}).get("steps")
        preset = c.get("preset") or "—"
        name = labels.get("generator") if record["kind"] != "train" else labels.get("segmenter")
        model = c.get("model", "")
        if record["kind"] == "sample":
            model = f"{c.get('n')} samples, {c.get('sampler') or 'default sampler'}"
        rows.append({"dataset": dataset, "stage": record["kind"], "name": name or "", "model": model,
                     "preset": preset, "steps": fmt(steps)})
    seeds = sorted({r["labels"]["seed"] for r in stages if r["kind"] == "train" and "seed" in r["labels"]})
    section.text(f"{len(stages)} finished stages; segmenter seeds: {', '.join(map(str, seeds)) or '—'}.")
    table = pd.DataFrame(rows, columns=["dataset", "stage", "name", "model", "preset", "steps"]).drop_duplicates()
    section.table(table.sort_values(["dataset", "stage", "name"], kind="stable").reset_index(drop=True))


def generation_table(results: pd.DataFrame) -> pd.DataFrame:
    """The generation metrics, mean over rows: index ``(dataset, generator, features)``, a column
    per metric name (``fd``, ``kid_mean``, …); empty without fidelity rows."""
    rows = results[results.metric.str.contains("/", na=False) & ~results.metric.str.startswith("memorization/")]
    if rows.empty:
        return pd.DataFrame()
    rows = rows.assign(features=rows.metric.str.split("/").str[0], name=rows.metric.str.split("/", n=1).str[1])
    return rows.pivot_table(index=["dataset", "generator", "features"], columns="name", values="value",
                            aggfunc="mean")


def _generation(results: pd.DataFrame, section: Section) -> pd.DataFrame:
    """The generation-metric table (one row per dataset × generator × feature space); returned for ranking."""
    table = generation_table(results)
    if table.empty:
        section.text("No finished fidelity stages.")
        return table
    table = table[[c for c in SHOWN if c in table.columns] or list(table.columns)]
    section.table(table.reset_index().map(fmt))
    return table


def _ranks(table: pd.DataFrame, section: Section) -> pd.DataFrame:
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


def _segmentation(results: pd.DataFrame, section: Section) -> None:
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


def evaluations(stages: list[dict]) -> tuple[list[dict], list[dict]]:
    """The finished ``evaluate`` stages' evaluations and labels. One written before evaluations
    recorded their run's settings gets them from the train stage's ``run/run.json`` (and the
    preset from its config)."""
    by_key = {r["key"]: r for r in stages}
    evaluations, labels = [], []
    for record in stages:
        path = record["folder"] / RESULT_JSON
        if record["kind"] != "evaluate" or not path.is_file():
            continue
        evaluation = json.loads(path.read_text())
        train = next((by_key[k] for k in record.get("inputs", []) if by_key.get(k, {}).get("kind") == "train"), None)
        run_json = train["folder"] / "run" / "run.json" if train else None
        if "training" not in evaluation and run_json is not None and run_json.is_file():
            info = json.loads(run_json.read_text())
            training = dict(info.get("training") or {})
            training.setdefault("preset", train["config"].get("preset"))
            evaluation = dict(evaluation, model=info.get("model"), training=training)
        evaluations.append(evaluation)
        labels.append(record["labels"])
    return evaluations, labels


def _relative(matched: pd.DataFrame, unmatched: pd.DataFrame, section: Section) -> None:
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


def _correlation(results: pd.DataFrame, ranks: pd.DataFrame, section: Section) -> None:
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


def _pyplot():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _curves_png(curves: dict[str, dict[str, pd.Series]], xlabel: str, ylabel: str = "Dice") -> bytes:
    """One panel per region (``curves[region][line] = y indexed by x``), lines with markers."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(3.4 * len(curves), 3), squeeze=False)
    for ax, (region, lines) in zip(axes[0], curves.items()):
        for label, points in lines.items():
            ax.plot(points.index, points.values, marker="o", label=label)
        ax.set_title(region)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_xlim(-0.05, 1.05)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _regions(frame: pd.DataFrame) -> list[str]:
    return [r for r in ("WT", "TC", "ET") if r in set(frame.region)]


def _by_dataset(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """``frame``'s rows per dataset, datasets in order of appearance."""
    return [(str(d), sub) for d, sub in frame.groupby(frame["dataset"].fillna("—"), sort=False)]


def _real_fraction(results: pd.DataFrame, section: Section) -> None:
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
        section.image(_curves_png(curves, "real fraction"), f"{dataset}: Dice vs real fraction")


def _pretraining(results: pd.DataFrame, section: Section) -> None:
    dice = results[(results.metric == "dice") & results.train_set.isin(["real", "pretrained"])]
    fractions = set(dice[dice.train_set == "pretrained"].subject_fraction.dropna())
    if not fractions:
        section.text("No pre-training curve in this study (pretraining.subject_fractions is empty).")
        return
    dice = dice[dice.subject_fraction.isin(fractions | {1.0})]  # scratch at 1: the plain real-only run
    section.text("Each segmenter pre-trained on a generator's synthetic samples, then fine-tuned on a share of the "
                 "real training subjects, against the same segmenter trained from scratch on that share; mean Dice "
                 "over seeds.")
    for dataset, rows in _by_dataset(dice):
        curves: dict[str, dict[str, pd.Series]] = {}
        for region in _regions(rows):
            lines = curves.setdefault(region, {})
            for (train_set, gen, seg), sub in rows[rows.region == region].groupby(
                    ["train_set", rows.generator.fillna(""), "segmenter"]):
                name = f"scratch / {seg}" if train_set == "real" else f"pre-trained on {gen} / {seg}"
                lines[name] = sub.groupby("subject_fraction")["value"].mean().sort_index()
        section.image(_curves_png(curves, "share of real training subjects"),
                      f"{dataset}: Dice vs share of real subjects")
    keys = ["dataset", "segmenter", "augmentation", "seed", "subject_fraction", "region"]
    scratch = dice[dice.train_set == "real"][keys + ["value"]].rename(columns={"value": "scratch"})
    gain = dice[dice.train_set == "pretrained"].merge(scratch, on=keys)
    gain = _labels(gain.assign(value=gain.value - gain.scratch))
    table = gain.groupby(["dataset", "generator", "segmenter", "augmentation", "subject_fraction", "region"])[
        "value"].apply(mean_sd).unstack("region")
    section.text("Dice gain of pre-training (pre-trained − scratch), mean ± sd over seeds.")
    section.table(table[_regions(gain)].reset_index())


def _memorization(stages: list[dict], results: pd.DataFrame, section: Section, closest: int) -> None:
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
            section.image(_histogram_png(hist, record["config"].get("threshold"), gen), f"{gen}: memorization histogram")
        inputs = {finished[k]["kind"]: finished[k]["folder"] for k in record.get("inputs", []) if k in finished}
        if (record["folder"] / "memorization.json").is_file() and {"prepare", "sample"} <= inputs.keys():
            _closest_pairs(record["folder"] / "memorization.json", inputs["sample"] / "store",
                           inputs["prepare"] / "store", gen, section, closest)


def _histogram_png(hist: dict, threshold: float | None, gen: str) -> bytes:
    plt = _pyplot()
    edges, counts = np.asarray(hist["edges"]), np.asarray(hist["counts"])
    fig, ax = plt.subplots(figsize=(4.5, 2.8))
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="0.4")
    if threshold is not None:
        ax.axvline(threshold, color="red", linestyle="--", label=f"threshold {threshold:g}")
        ax.legend(fontsize=7)
    ax.set_title(f"{gen}: max correlation with a training sample", fontsize=9)
    ax.set_xlabel("max Pearson correlation")
    ax.set_ylabel("synthetic samples")
    fig.tight_layout()
    return _png(fig)


def _closest_pairs(audit_json: Path, synthetic: Path, train: Path, gen: str, section: Section, top_k: int) -> None:
    """The ``top_k`` synthetic samples closest to a training sample, beside it (the audit of the
    ``synthetic`` store against the ``train`` store)."""
    from synthmed.data.store import Store
    from synthmed.evaluate import MemorizationAudit, plot_gallery

    try:
        result = MemorizationAudit.load(audit_json)
        stores = Store.open(synthetic), Store.open(train)
        png = _rendered(lambda path: plot_gallery(result, *stores, path, top_k=top_k))
    except Exception as exc:  # noqa: BLE001 — a broken store must not stop the report
        section.text(f"{gen}: no closest-pair gallery ({exc}).")
        return
    section.image(png, f"{gen}: closest pairs (synthetic | nearest training sample | difference)")


def _rendered(draw) -> bytes:  # noqa: ANN001
    """The bytes of the PNG that ``draw(path)`` writes (into a temporary folder)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "figure.png"
        draw(path)
        return path.read_bytes()


def _galleries(stages: list[dict], section: Section, n: int) -> None:
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
            png = _rendered(lambda path: render_grid(Store.open(record["folder"] / "store"), path, n=n))
        except Exception as exc:  # noqa: BLE001 — a broken store must not stop the report
            section.text(f"{name}: no gallery ({exc}).")
            continue
        section.image(png, f"{name} samples")


def read_scalars(run_dir: Path) -> dict[str, pd.Series]:
    """A run's TensorBoard scalars: ``{tag: values indexed by step}`` (empty without event files)."""
    events = run_dir / "tensorboard"
    if not events.is_dir():
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events), size_guidance={"scalars": 0, "images": 1, "tensors": 1, "histograms": 1})
    acc.Reload()
    out = {}
    for tag in acc.Tags().get("scalars", []):
        points = {e.step: e.value for e in acc.Scalars(tag)}  # a resumed run's later value of a step wins
        out[tag] = pd.Series(points, dtype=float).sort_index()
    return out


def _line(ax, points: pd.Series, label: str) -> None:  # noqa: ANN001
    """A curve over steps; short ones (a few logged steps) get markers so a single point shows."""
    ax.plot(points.index, points.values, label=label, marker="o" if len(points) <= 25 else None, markersize=3)


def _segmenter_line(labels: dict) -> str:
    """A train stage's line in the training-curve plot: train set, generator and what differs."""
    name = " ".join(str(x) for x in (labels.get("train_set"), labels.get("generator")) if x)
    if labels.get("subject_fraction", 1.0) != 1.0:
        name += f" subjects={labels['subject_fraction']:g}"
    if labels.get("train_set") == "synthetic+real" and labels.get("real_fraction") is not None:
        name += f" real={labels['real_fraction']:g}"
    return name + ("" if labels.get("augmentation", True) else " no-aug")


def _training_curves(stages: list[dict], section: Section) -> None:
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
    plt = _pyplot()
    if by_dataset:
        section.text("Generator training losses per step.")
    for dataset, generators in sorted(by_dataset.items()):
        fig, axes = plt.subplots(1, len(generators), figsize=(3.4 * len(generators), 2.8), squeeze=False)
        for ax, (gen, losses) in zip(axes[0], generators.items()):
            for name, points in losses.items():
                _line(ax, points, name)
            ax.set_title(gen, fontsize=9)
            ax.set_xlabel("step")
            ax.legend(fontsize=7)
        fig.tight_layout()
        section.image(_png(fig), f"{dataset}: generator training curves")
    for seg, curves in sorted(segmenters.items()):
        fig, axes = plt.subplots(1, 2, figsize=(9, 3), squeeze=False)
        for ax, (tag, by_line) in zip(axes[0], curves.items()):
            for name, series in sorted(by_line.items()):
                _line(ax, pd.concat(series, axis=1).mean(axis=1), name)
            ax.set_title(f"{seg}: {tag}", fontsize=9)
            ax.set_xlabel("step")
        axes[0][0].legend(fontsize=6)
        fig.tight_layout()
        section.text(f"{seg}: training loss and validation Dice per step, mean over seeds.")
        section.image(_png(fig), f"{seg} training curves")


# ----------------------------------------------------------------------------- rendering


def _table_md(frame: pd.DataFrame) -> str:
    columns = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(fmt(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines)


def _table_html(frame: pd.DataFrame, section_id: str) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(v))}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f'<table class="{section_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_markdown(title: str, sections: list[Section]) -> str:
    parts = [f"# {title}", ""]
    for s in sections:
        parts += [f"## {s.title}", ""]
        for kind, value in s.blocks:
            if kind == "text":
                parts += [value, ""]
            elif kind == "warning":
                parts += [f"> **Warning:** {value}", ""]
            elif kind == "table":
                parts += [_table_md(value), ""]
            else:
                png, alt = value
                parts += [f"![{alt}]({_data_uri(png)})", ""]
    return "\n".join(parts)


STYLE = ("body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
         "table{border-collapse:collapse;margin:0.5em 0;font-size:0.9em}"
         "th,td{border:1px solid #bbb;padding:0.2em 0.5em;text-align:right}"
         ".warning{background:#fff3cd;border:1px solid #e0a800;padding:0.5em}img{max-width:100%}")


def render_html(title: str, sections: list[Section]) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    for s in sections:
        parts.append(f'<section><h2 id="{s.id}">{html.escape(s.title)}</h2>')
        for kind, value in s.blocks:
            if kind == "text":
                parts.append(f"<p>{html.escape(value)}</p>")
            elif kind == "warning":
                parts.append(f'<p class="warning"><strong>Warning:</strong> {html.escape(value)}</p>')
            elif kind == "table":
                parts.append(_table_html(value, s.id))
            else:
                png, alt = value
                parts.append(f'<figure><img src="{_data_uri(png)}" alt="{html.escape(alt)}">'
                             f"<figcaption>{html.escape(alt)}</figcaption></figure>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def build_sections(out: str | Path, *, gallery_samples: int = 4, closest_pairs: int = 4
                   ) -> tuple[str, list[Section]]:
    """The report's title and sections (see :data:`SECTIONS`) from the study folder ``out``."""
    out = Path(out)
    stages = finished_stages(out)
    results = read_results(out)
    names = set(results.study.dropna()) if not results.empty else set()
    title = f"Study report: {next(iter(names)) if len(names) == 1 else out.name}"
    sections = {sid: Section(sid, t) for sid, t in SECTIONS}
    _settings(stages, sections["settings"])
    table = _generation(results, sections["generation-metrics"])
    ranks = _ranks(table, sections["rank-tables"])
    matched, unmatched = relative_dice_table(*evaluations(stages))
    write_summary(stages, results, matched, ranks, sections["summary"])
    _segmentation(results, sections["segmentation"])
    _relative(matched, unmatched, sections["relative-dice"])
    _correlation(results, ranks, sections["rank-correlation"])
    _real_fraction(results, sections["real-fraction"])
    _pretraining(results, sections["pretraining"])
    _memorization(stages, results, sections["memorization"], closest_pairs)
    _galleries(stages, sections["galleries"], gallery_samples)
    _training_curves(stages, sections["training-curves"])
    return title, list(sections.values())


def report_fingerprint(out: str | Path, **options: Any) -> str:
    """SHA-256 of what the report is built from: the finished stages' names, ``results.csv``,
    the ``options`` and the code of the report's modules (:data:`REPORT_CODE`)."""
    out = Path(out)
    digest = hashlib.sha256()
    for name in REPORT_CODE:
        digest.update((Path(__file__).parent / name).read_bytes())
    root = out / STAGES_DIR
    names = sorted(f.name for f in root.iterdir() if (f / DONE_JSON).is_file()) if root.is_dir() else []
    digest.update(json.dumps({"stages": names, "options": options}, sort_keys=True).encode())
    csv = out / RESULTS_CSV
    digest.update(csv.read_bytes() if csv.is_file() else b"")
    return digest.hexdigest()


def write_report(out: str | Path, *, gallery_samples: int = 4, closest_pairs: int = 4,
                 force: bool = False) -> tuple[Path, Path]:
    """(Re)build ``out/report.md`` and ``out/report.html`` (atomically); return their paths.

    Unless ``force``, nothing is rebuilt when both files exist and :func:`report_fingerprint`
    equals the one recorded in ``out/.report.json`` at the last build.
    """
    out = Path(out)
    md, page, cache = out / REPORT_MD, out / REPORT_HTML, out / REPORT_CACHE
    fingerprint = report_fingerprint(out, gallery_samples=gallery_samples, closest_pairs=closest_pairs)
    if not force and md.is_file() and page.is_file() and cache.is_file():
        try:
            if json.loads(cache.read_text()).get("fingerprint") == fingerprint:
                return md, page
        except ValueError:
            pass  # an unreadable cache only means a rebuild
    title, sections = build_sections(out, gallery_samples=gallery_samples, closest_pairs=closest_pairs)
    with atomic_file(md) as tmp:
        tmp.write_text(render_markdown(title, sections))
    with atomic_file(page) as tmp:
        tmp.write_text(render_html(title, sections))
    with atomic_file(cache) as tmp:
        tmp.write_text(json.dumps({"fingerprint": fingerprint}) + "\n")
    return md, page
