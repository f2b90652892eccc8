"""``synthmed evaluate …`` (fidelity, memorization) and ``synthmed export``."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from synthmed.cli_options import Device, Json, JsonSummary, Progress, ProgressBars

#: = :data:`synthmed.evaluate.memorization.DEFAULT_THRESHOLD` (a test keeps them equal); not imported so that
#: starting the CLI does not import torch.
DEFAULT_THRESHOLD = 0.95
#: = :data:`synthmed.metrics.shift_flip.DEFAULT_MAX_SHIFT` (the same test keeps them equal).
DEFAULT_MAX_SHIFT = 2
_SIMILARITY_HELP = ("pixel (maximum Pearson correlation) or shift-flip (the maximum over shifts up to --max-shift "
                    "px and the left-right mirror; catches mirrored and shifted copies, about 50x the time).")
# The options memorization and export's privacy gate share.
Threshold = Annotated[float, typer.Option(help="Near-copy threshold on the maximum Pearson correlation.")]
MaxShift = Annotated[int, typer.Option(help="shift-flip: largest shift in pixels along y and x.")]

evaluate_app = typer.Typer(help="Fidelity (FD, KID, IS, precision/recall, density/coverage) and privacy "
                                "(memorization) of synthetic stores.", no_args_is_help=True)
stdout = Console(soft_wrap=True)  # results on stdout
stderr = Console(stderr=True, soft_wrap=True)


@contextmanager
def _warnings_to_stderr() -> Iterator[None]:
    """Collect warnings and print each (once) as a yellow line on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    seen = set()
    for w in caught:
        text = str(w.message)
        if issubclass(w.category, UserWarning) and text not in seen:
            seen.add(text)
            stderr.print(f"[yellow]warning:[/] {escape(text)}", highlight=False)


def _fmt(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _slice_table(sc: dict) -> Table:
    """The slice-consistency table of a 3D fidelity result: synthetic, real and their comparison."""
    table = Table("slice consistency (axial)", "synthetic", "real", "synthetic vs real", title_justify="left")
    table.add_row("adjacent-slice correlation", _fmt(sc["correlation"]), _fmt(sc["correlation_real"]),
                  f"ratio {_fmt(sc['correlation_ratio'])}")
    table.add_row("inter-slice |difference|, mean", _fmt(sc["difference"]), _fmt(sc["difference_real"]),
                  f"ratio {_fmt(sc['difference_ratio'])}")
    for p in (5, 50, 95):
        table.add_row(f"  percentile {p} (pairs)", _fmt(sc[f"difference_p{p}"]), _fmt(sc[f"difference_p{p}_real"]), "")
    table.add_row("difference distributions", "", "", f"Wasserstein {_fmt(sc['difference_wasserstein'])}, "
                                                        f"KS {_fmt(sc['difference_ks'])}")
    table.add_row("pairs (flat, left out of r)", f"{sc['pairs']} ({sc['flat_pairs']})",
                  f"{sc['pairs_real']} ({sc['flat_pairs_real']})", "")
    return table


@evaluate_app.command("fidelity")
def evaluate_fidelity(
    real: Annotated[Path, typer.Option("--real", help="Real store (its --real-split is the reference).")],
    synthetic: Annotated[Path, typer.Option("--synthetic", help="Synthetic store to evaluate.")],
    features: Annotated[str, typer.Option(help="Feature space: domain (self-supervised encoder trained on the real "
                                               "train split, offline), radimagenet or inception (need --weights).")] = "domain",
    weights: Annotated[Optional[Path], typer.Option(help="Weights file (radimagenet: ResNet-50 .pt/.pth/.safetensors; "
                                                          "inception: FID Inception .pth); domain: the encoder folder "
                                                          "[default: REAL-encoder/].")] = None,
    real_split: Annotated[str, typer.Option(help="Split of the real store to compare with: test (held-out patients), "
                                                 "train or all. FD against the train split is fd_train.")] = "test",
    encoder_steps: Annotated[int, typer.Option(help="Training steps of a new domain encoder.")] = 500,
    channel_reduce: Annotated[str, typer.Option(help="Pretrained features per image channel: mean or concat.")] = "mean",
    batch: Annotated[int, typer.Option(help="Samples embedded at once.")] = 32,
    kid_subset_size: Annotated[int, typer.Option(help="KID subset size (reduced to the smaller set).")] = 1000,
    device: Device = "auto",
    seed: Annotated[int, typer.Option(help="Seed of KID subsets, real halves, IS splits and diversity pairs.")] = 0,
    as_json: Json = False,
    progress: ProgressBars = True,
) -> None:
    """FD against the held-out test patients of REAL (and fd_train against its training patients at
    the same sample size; relative FD: FD(half A, synthetic) / FD(half A, half B), halves by patient),
    KID, IS, precision/recall (k=3), density/coverage (k=5) and MS-SSIM diversity of SYNTHETIC
    beside that of REAL's pairs of patients. Volumes: features in 2.5D (three central planes), 3D
    MS-SSIM, and slice consistency (adjacent axial slices' correlation and difference) against REAL."""
    from synthmed.evaluate.fidelity import evaluate_fidelity as run
    from synthmed.features import DomainEncoderConfig

    with _warnings_to_stderr():
        result = run(real, synthetic, features=features, weights=weights,
                     real_split=None if real_split == "all" else real_split,
                     encoder_config=DomainEncoderConfig(steps=encoder_steps), channel_reduce=channel_reduce,
                     batch_size=batch, kid_subset_size=kid_subset_size, device=device, seed=seed, progress=progress)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    stdout.print(f"[bold]{escape(str(synthetic))}[/] vs {escape(str(real))} ({real_split}): "
                 f"{result['n_synthetic']} synthetic, {result['n_real']} real, {features} features "
                 f"(F = {result['feature_dim']})")
    table = Table("metric", "value", title_justify="left")
    rows = [("FD", result["fd"]), ("FD vs training patients", result["fd_train"]),
            ("FD real vs real", result["fd_real_real"]), ("relative FD", result["relative_fd"]),
            ("KID", result["kid_mean"]), ("KID std", result["kid_std"]), ("IS", result["is_mean"]),
            ("IS of real", result["is_real_mean"]), ("precision", result["precision"]), ("recall", result["recall"]),
            ("density", result["density"]), ("coverage", result["coverage"]), ("MS-SSIM (diversity)", result["ms_ssim"]),
            ("MS-SSIM of real pairs", result["ms_ssim_real"])]
    for name, value in rows:
        table.add_row(name, _fmt(value))
    stdout.print(table)
    if "slice_consistency" in result:
        stdout.print(f"volumes: {escape(result['feature_space'])}; MS-SSIM of whole volumes (3D)")
        stdout.print(_slice_table(result["slice_consistency"]))
    for name, reason in result["skipped"].items():
        stdout.print(f"[yellow]{name} not computed:[/] {escape(reason)}")


@evaluate_app.command("memorization")
def evaluate_memorization(
    train: Annotated[Path, typer.Option("--train", help="The generator's training store.")],
    synthetic: Annotated[Path, typer.Option("--synthetic", help="Synthetic store to audit.")],
    threshold: Threshold = DEFAULT_THRESHOLD,
    top_k: Annotated[int, typer.Option(help="Closest pairs shown in the gallery.")] = 8,
    split: Annotated[str, typer.Option(help="Split of --train compared with ('all' for every sample).")] = "train",
    out: Annotated[Optional[Path], typer.Option(help="Audit JSON to write [default: SYNTHETIC-memorization.json, "
                                                      "which the export gate reads]; the histogram and gallery PNGs go beside it.")] = None,
    embedding: Annotated[bool, typer.Option(help="Also the nearest distance in the domain encoder's embedding "
                                                 "(trained on --train if needed).")] = False,
    similarity: Annotated[str, typer.Option(help="Also record: " + _SIMILARITY_HELP)] = "pixel",
    max_shift: MaxShift = DEFAULT_MAX_SHIFT,
    device: Device = "auto",
    as_json: JsonSummary = False,
    overwrite: Annotated[bool, typer.Option(help="Replace the audit and its PNGs if they exist.")] = False,
) -> None:
    """For each synthetic sample, the maximum Pearson correlation with any training sample
    (image channels, joint and per channel) and which one; the share above the threshold,
    a histogram and a gallery of the closest pairs (synthetic | nearest real | difference)."""
    from synthmed.data.store import Store
    from synthmed.errors import SynthmedError
    from synthmed.evaluate import add_embedding_distance, audit, audit_path, plot_gallery, plot_histogram
    from synthmed.outputs import JSON_FILE, PNG_FILE, guard_output
    from synthmed.training.fabric import resolve_device

    if not 0 < threshold <= 1:
        raise SynthmedError(f"--threshold must be in (0, 1], got {threshold}")
    file = Path(out or audit_path(synthetic))
    stem = file.with_suffix("")
    hist_file, gallery_file = stem.with_name(stem.name + "-histogram.png"), stem.with_name(stem.name + "-gallery.png")
    for path, kind in ((file, JSON_FILE), (hist_file, PNG_FILE), (gallery_file, PNG_FILE)):
        guard_output(path, [train, synthetic], kind=kind, overwrite=overwrite)
    train_store, syn_store = Store.open(train), Store.open(synthetic)
    dev = resolve_device(device)
    with _warnings_to_stderr():
        result = audit(syn_store, train_store, train_split=None if split == "all" else split, threshold=threshold,
                       device=dev, similarity=similarity, max_shift=max_shift)
        if embedding:
            from synthmed.features import make_extractor

            add_embedding_distance(result, syn_store, train_store, make_extractor("domain", real=train_store, device=dev))
    path = result.save(file)
    hist = plot_histogram(result, hist_file)
    gallery = plot_gallery(result, syn_store, train_store, gallery_file, top_k=top_k)
    summary = {**result.summary(), "audit": str(path), "histogram_png": str(hist), "gallery_png": str(gallery)}
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    colour = "red" if summary["n_above"] else "green"
    stdout.print(f"[bold]{escape(str(synthetic))}[/] vs {escape(str(train))} ({split}): max correlation "
                 f"{summary['max']:.4f}, median {summary['median']:.4f}; [{colour}]{summary['n_above']} of "
                 f"{summary['n_synthetic']} above {threshold:g}[/]")
    if "shift_flip" in summary:
        tolerant = summary["shift_flip"]
        stdout.print(f"shift-flip (shifts up to {tolerant['max_shift']} px and the mirror): max correlation "
                     f"{tolerant['max']:.4f}; {tolerant['n_above']} above {threshold:g}")
    stdout.print(f"audit: {escape(str(path))}\nhistogram: {escape(str(hist))}\ngallery: {escape(str(gallery))}")


def export_command(
    store: Annotated[Path, typer.Argument(help="Store to export (real or synthetic).")],
    out: Annotated[Path, typer.Argument(help="Output folder (nifti, nnunet) or PNG file (png).")],
    format: Annotated[str, typer.Option("--format", help="nifti (BraTS layout), nnunet (nnU-Net v2 raw) or png (grid).")] = "nifti",
    allow_near_copies: Annotated[bool, typer.Option(help="Export a synthetic store even if samples are near copies "
                                                         "of training samples (or no audit is possible).")] = False,
    threshold: Threshold = DEFAULT_THRESHOLD,
    audit: Annotated[Optional[Path], typer.Option(help="Memorization audit JSON to use; refused unless made for "
                                                       "STORE's content and its training store [default: "
                                                       "STORE-memorization.json if so, else computed against "
                                                       "provenance.trained_on].")] = None,
    slices_per_case: Annotated[int, typer.Option(help="2D synthetic stores: samples stacked per exported volume.")] = 64,
    samples: Annotated[int, typer.Option(help="png: samples in the grid.")] = 16,
    similarity: Annotated[str, typer.Option(help="What the gate compares: " + _SIMILARITY_HELP)] = "pixel",
    max_shift: MaxShift = DEFAULT_MAX_SHIFT,
    device: Annotated[str, typer.Option(help="Device of an audit computed now: auto, cpu or cuda.")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
    progress: Progress = True,
) -> None:
    """Export STORE as NIfTI (BraTS layout), an nnU-Net raw dataset or a PNG grid, with new
    case ids. A synthetic store must pass a memorization audit against its generator's
    training data: no sample above --threshold, unless --allow-near-copies."""
    from synthmed.export import export_store
    from synthmed.training.fabric import resolve_device

    result = export_store(store, out, fmt=format, allow_near_copies=allow_near_copies, threshold=threshold,
                          audit_file=audit, overwrite=overwrite, slices_per_case=slices_per_case, samples=samples,
                          device=resolve_device(device), progress=progress, similarity=similarity, max_shift=max_shift)
    gate = result.gate
    if gate.get("checked"):
        note = f"privacy gate passed ({gate['source']} audit: max correlation {gate['max']:.4f} <= {gate['threshold']:g})"
    else:
        note = f"privacy gate: {gate.get('source')}"
    stdout.print(f"wrote {escape(str(result.path))}: {result.cases} {'rows' if format == 'png' else 'cases'} "
                 f"({format}); {escape(note)}")
