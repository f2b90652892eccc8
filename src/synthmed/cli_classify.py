"""``synthmed classify …``: robust classifiers (standard, adversarial, dual batch norm) trained on real or
synthetic stores, their clean and robust metrics, and saliency scored against the tumour masks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich import box
from rich.markup import escape
from rich.table import Column, Table

from synthmed.cli_options import (AdamLr, CheckpointEvery, Device, Devices, Json, LoaderWorkers, NBoot, OverwriteRun,
                                  Precision, Progress, ResumeRun, TrainBatch, TrainStores, TrainSteps, ValFraction,
                                  fabric_options)
from synthmed.errors import SynthmedError

classify_app = typer.Typer(help="Robust, interpretable classifiers (Han et al. 2020): tumour presence, regions or "
                           "grade from any store; standard, adversarial or dual-BN training; clean and robust "
                           "AUROC; saliency scored against the tumour masks.", no_args_is_help=True)
stdout = Console(soft_wrap=True)  # like synthmed.cli: results on stdout, unwrapped
#: ``--checkpoint`` of the commands that load a classifier run (:func:`synthmed.classify.api.load_classifier`).
Checkpoint = Annotated[str, typer.Option(help="auto (best by validation loss if any, else last), best or last.")]


def _sweep(text: Optional[str]) -> Optional[list[float]]:
    """``"0,0.005,0.01"`` or ``"0:0.01:21"`` (start:stop:count, inclusive) → values; ``None`` stays ``None``."""
    if text is None:
        return None
    try:
        if ":" in text:
            start, stop, count = text.split(":")
            import numpy as np

            return [float(v) for v in np.linspace(float(start), float(stop), int(count))]
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SynthmedError(f"--eps-sweep must be comma-separated values or start:stop:count, got {text!r}") from None


@classify_app.command("train")
def classify_train(
    out: Annotated[Path, typer.Argument(help="Run directory: config, checkpoints (last, and best by validation clean or robust loss: --select), logs.")],
    train: TrainStores,
    task: Annotated[str, typer.Option(help="presence (tumour in the sample), regions (NCR, ED, ET present: multi-label) or grade (ordinal WT burden, see the README).")] = "presence",
    model: Annotated[str, typer.Option(help="resnet18, resnet50 or densenet121 (MONAI, from scratch or --weights).")] = "resnet18",
    mode: Annotated[str, typer.Option(help="standard; adversarial (PGD examples only, Madry et al.); dual-bn (clean examples through one batch norm, PGD examples through another; Han et al.).")] = "standard",
    preset: Annotated[str, typer.Option(help="tiny (CPU seconds, tests), laptop (the phantom on a 2-core CPU in minutes), small (one GPU) or paper (Han et al.'s recipe).")] = "tiny",
    eps: Annotated[Optional[float], typer.Option(help="Training attack radius in [0, 1] image units (default 0.005, the paper's).")] = None,
    alpha: Annotated[Optional[float], typer.Option(help="Training attack step size (default: the preset's).")] = None,
    attack_steps: Annotated[Optional[int], typer.Option(help="PGD steps of the training attack (default: the preset's; the paper's 10).")] = None,
    norm: Annotated[Optional[str], typer.Option(help="Attack norm: linf (sign steps, box projection) or l2 (normalised-gradient steps, ball projection).")] = None,
    width: Annotated[Optional[float], typer.Option(help="Channel multiplier of the network (default: the preset's).")] = None,
    weights: Annotated[Optional[Path], typer.Option(help="Initialise from this .safetensors file (single- or dual-BN keys; nothing is downloaded).")] = None,
    subject_fraction: Annotated[float, typer.Option(help="Share of real training subjects kept (the data-size curve).")] = 1.0,
    steps: TrainSteps = None,
    batch: TrainBatch = None,
    lr: AdamLr = None,
    val_fraction: ValFraction = None,
    validate_every: Annotated[Optional[int], typer.Option(help="Validate, keeping the best checkpoint (--select), every N steps (default: the preset's).")] = None,
    select: Annotated[Optional[str], typer.Option(help="Best checkpoint by validation clean loss (clean, the paper's rule) or by robust loss on PGD examples of the training attack (robust; Rice et al. 2020). Default clean.")] = None,
    clean_weight: Annotated[Optional[float], typer.Option(help="dual-bn: weight w of the clean term, loss = w·clean + adversarial (default 1, the paper's equal weights).")] = None,
    checkpoint_every: CheckpointEvery = None,
    resume: ResumeRun = False,
    overwrite: OverwriteRun = False,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, validation split, data order and attack starts (a resumed run keeps its own).")] = 0,
    device: Device = "auto",
    devices: Devices = 1,
    precision: Precision = "auto",
    workers: LoaderWorkers = 0,
    progress: Progress = True,
) -> None:
    """Train a classifier (multi-label BCE) on one or more stores: standard, adversarial or dual-BN."""
    from synthmed.classify.api import train_classifier

    final = train_classifier(
        out, train, task=task, model=model, mode=mode, preset=preset, subject_fraction=subject_fraction,
        weights=weights, model_overrides={"width": width},
        train_overrides={"steps": steps, "batch": batch, "lr": lr, "eps": eps, "alpha": alpha,
                         "attack_steps": attack_steps, "norm": norm, "val_fraction": val_fraction,
                         "validate_every": validate_every, "checkpoint_every": checkpoint_every,
                         "select": select, "clean_weight": clean_weight,
                         "num_workers": workers},
        seed=seed, fabric=fabric_options(device, devices, precision),
        resume=resume, overwrite=overwrite, progress=progress)
    if final is not None:
        stdout.print(f"trained {escape(str(out))} to step {final}")


@classify_app.command("eval")
def classify_eval(
    run: Annotated[Path, typer.Argument(help="Classifier run directory.")],
    test: Annotated[Path, typer.Option("--test", help="Store whose 'test' split holds the test subjects.")],
    eps_sweep: Annotated[Optional[str], typer.Option(help="Attack radii: comma-separated, or start:stop:count (default 0:0.01:21 for linf, the paper's; 0:1:21 for l2).")] = None,
    norm: Annotated[str, typer.Option(help="Attack norm: linf or l2.")] = "linf",
    attack_steps: Annotated[int, typer.Option(help="PGD steps of the evaluation attack (step size eps / 2).")] = 10,
    n_boot: NBoot = 1000,
    checkpoint: Checkpoint = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the attacks' random starts and the bootstrap.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full result (clean and robust) as JSON.")] = False,
    device: Device = "auto",
    batch: Annotated[int, typer.Option(help="Samples attacked and predicted at once.")] = 64,
    overwrite: Annotated[bool, typer.Option(help="Replace RUN/eval/<store>.json, .csv and _eps.png if they exist.")] = False,
    progress: Progress = True,
) -> None:
    """Clean and robust AUROC, accuracy and balanced accuracy per label with subject-bootstrap intervals."""
    from synthmed.classify.robustness import evaluate_classifier

    result = evaluate_classifier(run, test, checkpoint=checkpoint, eps_sweep=_sweep(eps_sweep), norm=norm,
                                 attack_steps=attack_steps, n_boot=n_boot, seed=seed, device=device, batch=batch,
                                 overwrite=overwrite, progress=progress)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    table = Table("label", "AUROC [95 % CI]", "accuracy", "balanced accuracy", "positives",
                  title=f"clean: {result['n']} test samples of {result['subjects']} subjects, {result['network']} "
                        f"{result['mode']}, checkpoint {result['checkpoint']['name']} (step {result['checkpoint']['step']})",
                  title_justify="left")
    for label in result["labels"]:
        m = result["clean"][label]
        table.add_row(label, f"{m['auroc']:.3f} [{m['auroc_ci'][0]:.3f}, {m['auroc_ci'][1]:.3f}]",
                      f"{m['accuracy']:.3f}", f"{m['balanced_accuracy']:.3f}", f"{m['positives']}/{m['n']}")
    stdout.print(table)
    robust = Table("ε", *(f"AUROC, {r} BN" for r in result["robust"]["routes"]),
                   title=f"robust (macro-mean AUROC; {result['robust']['attack']['norm']} PGD, "
                         f"{result['robust']['attack']['steps']} steps, adversarial-robustness-toolbox)",
                   title_justify="left")
    points = list(zip(*result["robust"]["routes"].values()))
    for row in points:
        robust.add_row(f"{row[0]['eps']:.4g}", *(f"{p['metrics']['mean']['auroc']:.3f}" for p in row))
    stdout.print(robust)
    stdout.print(f"files: {escape(str(Path(run) / 'eval' / Path(test).name))}.json, .csv, _eps.png")


@classify_app.command("saliency")
def classify_saliency(
    runs: Annotated[list[Path], typer.Argument(help="Classifier run directories (one gallery column each).")],
    test: Annotated[Path, typer.Option("--test", help="Store whose tumour-bearing 'test' samples are explained.")],
    method: Annotated[str, typer.Option(help="gradient, smoothgrad, integrated-gradients or gradcam (Captum).")] = "gradient",
    target: Annotated[Optional[str], typer.Option(help="Output explained (default the task's first: tumour, NCR or grade>=1).")] = None,
    dilation: Annotated[int, typer.Option(help="Voxels the WT mask is dilated by before scoring.")] = 1,
    max_samples: Annotated[Optional[int], typer.Option(help="Score at most this many tumour-bearing samples (default all).")] = None,
    gallery_samples: Annotated[int, typer.Option(help="Subjects shown in the gallery (their largest-tumour sample).")] = 6,
    out: Annotated[Optional[Path], typer.Option(help="Gallery PNG (the JSON is written beside it; default RUN/saliency/<store>_<method>.png of the first run).")] = None,
    n_boot: NBoot = 1000,
    checkpoint: Checkpoint = "auto",
    seed: Annotated[int, typer.Option(help="Seed of SmoothGrad's noise and the bootstrap.")] = 0,
    as_json: Json = False,
    device: Device = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace the gallery and JSON if they exist.")] = False,
    progress: Progress = True,
) -> None:
    """Saliency maps scored against the WT mask: mass inside it, pointing game, voxel AUROC; and a gallery."""
    from synthmed.classify.interpret import explain

    result = explain(runs, test, method=method, target=target, checkpoint=checkpoint, dilation=dilation,
                     max_samples=max_samples, gallery_samples=gallery_samples, n_boot=n_boot, seed=seed, out=out,
                     device=device, overwrite=overwrite, progress=progress)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    table = Table("run", "mode", "mass in mask [95 % CI]", "pointing game", "AUROC",
                  title=f"{method} saliency of {result['target']} on {result['n']} tumour-bearing test samples "
                        f"({result['subjects']} subjects), WT dilated by {result['dilation']}", title_justify="left")
    for r in result["runs"]:
        table.add_row(escape(r["name"]), r["mode"],
                      f"{r['mass_in_mask']:.3f} [{r['mass_in_mask_ci'][0]:.3f}, {r['mass_in_mask_ci'][1]:.3f}]",
                      f"{r['pointing_game']:.3f}", f"{r['auroc']:.3f}")
    stdout.print(table)
    stdout.print(f"gallery: {escape(str(result['gallery']))}")


@classify_app.command("cka")
def classify_cka(
    run: Annotated[Path, typer.Argument(help="A dual-bn classifier run directory.")],
    test: Annotated[Path, typer.Option("--test", help="Store whose 'test' samples are forwarded through both batch norms.")],
    max_samples: Annotated[int, typer.Option(help="Test samples used, drawn with --seed (Han et al. used one batch of 196).")] = 256,
    adversarial: Annotated[bool, typer.Option(help="Also compare on PGD examples (the run's training attack, crafted through the adversarial BN).")] = True,
    debiased: Annotated[bool, typer.Option(help="The debiased CKA (unbiased HSIC, as Han et al.); default the biased one, in [0, 1].")] = False,
    checkpoint: Checkpoint = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the sample draw and the attack's random start.")] = 0,
    as_json: Json = False,
    device: Device = "auto",
    batch: Annotated[int, typer.Option(help="Samples forwarded and attacked at once.")] = 64,
    overwrite: Annotated[bool, typer.Option(help="Replace RUN/eval/<store>_cka.json and _cka.png if they exist.")] = False,
    progress: Progress = True,
) -> None:
    """Linear CKA of a dual-BN run's activations through its clean and adversarial batch norms, layer by layer."""
    from synthmed.classify.branches import compare_branches

    result = compare_branches(run, test, checkpoint=checkpoint, max_samples=max_samples, adversarial=adversarial,
                              debiased=debiased, seed=seed, device=device, batch=batch, overwrite=overwrite,
                              progress=progress)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    short = {"routes_on_clean": "clean", "routes_on_adversarial": "adv.", "inputs_on_clean_bn": "BN0",
             "inputs_on_adversarial_bn": "BN1"}
    computed = [k for k, c in result["comparisons"].items() if any(v is not None for v in c["cka"])]
    names = [layer["name"] for layer in result["layers"]]
    table = Table(Column("layer", no_wrap=True, min_width=max(map(len, names))),
                  *(Column(h, min_width=5) for h in [*(short.get(k, k) for k in computed), "mean r", "shift", "σ ratio"]),
                  box=box.SIMPLE_HEAD, pad_edge=False,
                  title=f"linear CKA ({result['estimator']}) of {result['network']} {result['mode']} on {result['n']} "
                        f"test samples ({result['subjects']} subjects)", title_justify="left",
                  caption="CKA clean / adv.: the clean / adversarial images through BN0 against through BN1; CKA BN0 / "
                          "BN1: clean against adversarial images through that BN. Running statistics of BN1 against "
                          "BN0: correlation of the means (mean r), mean shift in BN0 standard deviations, std ratio.",
                  caption_justify="left")

    def cell(value: Optional[float]) -> str:
        return "—" if value is None else f"{value:.3f}"

    for name, i in zip(names, range(len(names))):
        stats = result["layers"][i]["statistics"] or {}
        table.add_row(escape(name), *(cell(result["comparisons"][k]["cka"][i]) for k in computed),
                      cell(stats.get("mean_correlation")), cell(stats.get("mean_shift")), cell(stats.get("std_ratio")))
    stdout.print(table)
    stdout.print(f"files: {escape(str(result['figure']).removesuffix('.png'))}.json, .png")


__all__ = ["classify_app"]
