"""``synthmed segment …``: train a segmenter on real / synthetic / mixed stores, evaluate it on
real test patients, and compute relative Dice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from synthmed.cli_options import (CheckpointEvery, Device, Devices, Json, LoaderWorkers, OverwriteRun, Precision,
                                  Progress, ResumeRun, TrainBatch, TrainStores, ValFraction, fabric_options)
from synthmed.errors import SynthmedError

segment_app = typer.Typer(help="Utility: segmentation networks trained on real, synthetic or mixed stores, "
                          "tested on real patients (Dice, HD95, relative Dice).", no_args_is_help=True)
stdout = Console(soft_wrap=True)  # like synthmed.cli: results on stdout, unwrapped


@segment_app.command("train")
def segment_train(
    out: Annotated[Path, typer.Argument(help="Run directory: config, checkpoints (last and best by validation Dice), logs.")],
    train: TrainStores,
    model: Annotated[str, typer.Option(help="unet (MONAI DynUNet, nnU-Net style) or swin (SwinUNETR).")] = "unet",
    preset: Annotated[str, typer.Option(help="tiny (CPU seconds, unit tests), laptop (real results on a 2-core CPU in minutes, 32 px), small (one GPU, 64-128 px) or paper (the reference study's 256² set-up).")] = "tiny",
    aug: Annotated[bool, typer.Option("--aug/--no-aug", help="Augment: rotation ±30°, scaling 0.9-1.1, noise, blur, gamma.")] = True,
    real_fraction: Annotated[Optional[float], typer.Option(help="Share F of real samples in a fixed budget of --budget samples (needs real and synthetic --train stores).")] = None,
    budget: Annotated[Optional[int], typer.Option(help="Samples in a --real-fraction training set (default: the smaller of the real and synthetic pools).")] = None,
    subject_fraction: Annotated[float, typer.Option(help="Share of real training subjects kept (scarce-data curve, with --pretrain).")] = 1.0,
    pretrain: Annotated[Optional[Path], typer.Option(help="Start from this finished segmenter run, or pre-train on this (synthetic) store first (into OUT/pretrain, resumed with OUT), then fine-tune.")] = None,
    pretrain_steps: Annotated[Optional[int], typer.Option(help="Steps of pre-training on a --pretrain store (default: --steps).")] = None,
    pretrain_mode: Annotated[str, typer.Option(help="How a --pretrain STORE is pre-trained on: supervised (its images and masks, the segmentation loss; every weight transfers) or ssl (self-supervised, its images only, masks never read: denoising in-painting, the network reconstructs images with noise and random cuboids cut out; encoder and decoder transfer, the output head starts afresh). A --pretrain RUN is used as it is (supervised).")] = "supervised",
    steps: Annotated[Optional[int], typer.Option(help="Total training steps, the same whatever the training set (default: the preset's).")] = None,
    batch: TrainBatch = None,
    lr: Annotated[Optional[float], typer.Option(help="AdamW learning rate (default: the preset's).")] = None,
    val_fraction: ValFraction = None,
    validate_every: Annotated[Optional[int], typer.Option(help="Validate, keeping the best checkpoint by Dice, every N steps (default: the preset's).")] = None,
    checkpoint_every: CheckpointEvery = None,
    deep_supervision: Annotated[Optional[bool], typer.Option("--deep-supervision/--no-deep-supervision", help="unet: deep-supervision loss (default: the preset's).")] = None,
    resume: ResumeRun = False,
    overwrite: OverwriteRun = False,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, validation split, mixing, data order and augmentation (a resumed run keeps its own).")] = 0,
    device: Device = "auto",
    devices: Devices = 1,
    precision: Precision = "auto",
    workers: LoaderWorkers = 0,
    progress: Progress = True,
) -> None:
    """Train a segmentation network (Dice + BCE on the regions WT, TC, ET) on one or more stores."""
    from synthmed.segmentation.api import train_segmenter

    final = train_segmenter(
        out, train, model=model, preset=preset, real_fraction=real_fraction, budget=budget,
        subject_fraction=subject_fraction, pretrain=pretrain, pretrain_steps=pretrain_steps, pretrain_mode=pretrain_mode,
        model_overrides={"deep_supervision": deep_supervision},
        train_overrides={"steps": steps, "batch": batch, "lr": lr, "aug": aug, "val_fraction": val_fraction,
                         "validate_every": validate_every, "checkpoint_every": checkpoint_every, "num_workers": workers},
        seed=seed, fabric=fabric_options(device, devices, precision),
        resume=resume, overwrite=overwrite, progress=progress)
    if final is not None:
        stdout.print(f"trained {escape(str(out))} to step {final}")


@segment_app.command("eval")
def segment_eval(
    run: Annotated[Path, typer.Argument(help="Segmenter run directory.")],
    test: Annotated[Path, typer.Option("--test", help="Real store whose 'test' split holds the test patients.")],
    checkpoint: Annotated[str, typer.Option(help="auto (best by validation Dice if any, else last), best or last.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the full result (mean, sd and per case) as JSON.")] = False,
    device: Device = "auto",
    batch: Annotated[int, typer.Option(help="Slices or volumes predicted at once.")] = 16,
    overwrite: Annotated[bool, typer.Option(help="Replace RUN/eval/<store>.json and .csv if they exist.")] = False,
) -> None:
    """Dice, HD95 and HD95-max (mm) per test case on WT, TC and ET; writes RUN/eval/<store>.json and .csv."""
    from synthmed.segmentation.api import evaluate_run

    result = evaluate_run(run, test, checkpoint=checkpoint, device=device, batch=batch, overwrite=overwrite)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    table = Table("region", "Dice mean ± sd", "HD95 (mm) mean ± sd", "HD95-max (mm) mean ± sd",
                  title=f"{result['n']} test cases, {result['network']}, checkpoint {result['checkpoint']['name']} "
                        f"(step {result['checkpoint']['step']})", title_justify="left")
    for region in result["regions"]:
        m, s = result["mean"][region], result["sd"][region]
        table.add_row(region, f"{m['dice']:.4f} ± {s['dice']:.4f}", f"{m['hd95']:.2f} ± {s['hd95']:.2f}",
                      f"{m['hd95_max']:.2f} ± {s['hd95_max']:.2f}")
    stdout.print(table)
    stdout.print(f"per case: {escape(str(Path(run) / 'eval' / Path(test).name))}.csv")


@segment_app.command("relative")
def segment_relative(
    synthetic: Annotated[Path, typer.Argument(help="Evaluation JSON of the run trained on synthetic (or mixed) data.")],
    real: Annotated[Path, typer.Argument(help="Evaluation JSON of the matched real-only run: the same in everything but the training data (test store, network, preset, steps, aug, seed, share of subjects).")],
    as_json: Json = False,
) -> None:
    """Relative Dice = Dice(synthetic) / Dice(real) per region, for matched runs (anything else is refused)."""
    from synthmed.segmentation.api import relative_dice

    ratios = relative_dice(synthetic, real)
    if as_json:
        print(json.dumps(ratios, indent=2))
        return
    stdout.print(", ".join(f"{k} {v:.4f}" for k, v in ratios.items()))


__all__ = ["segment_app", "SynthmedError"]
