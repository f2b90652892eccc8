"""``synthmed generator …``: train a generator on a store, sample a synthetic store from a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from synthmed.cli_options import (AdamLr, CheckpointEvery, Device, Devices, Force, LoaderWorkers, OverwriteRun,
                                  Precision, Progress, ResumeRun, TrainBatch, TrainSteps, fabric_options)
from synthmed.errors import SynthmedError
from synthmed.generators.registry import summaries

generator_app = typer.Typer(help="Generators: train on a store (resumable, multi-GPU), sample synthetic stores.",
                            no_args_is_help=True)
stdout = Console(soft_wrap=True)  # like synthmed.cli: results on stdout, unwrapped


@generator_app.command("train")
def generator_train(
    store: Annotated[Path, typer.Argument(help="Training store (its 'train' split is used; test patients stay unseen).")],
    run: Annotated[Path, typer.Argument(help="Run directory: config, checkpoints, TensorBoard logs.")],
    model: Annotated[str, typer.Option(help=f"Generator: {summaries()}.")] = "ddpm",
    preset: Annotated[str, typer.Option(help="tiny (CPU seconds, 16-32 px, unit tests), laptop (real results on a 2-core CPU in minutes, 32-64 px), small (one GPU, 64-128 px) or paper (the reference study at 256²; ldm: Khader et al.'s BraTS set-up at 64³); ldm also laptop64 (one CPU thread at 64³).")] = "tiny",
    steps: TrainSteps = None,
    batch: TrainBatch = None,
    lr: AdamLr = None,
    checkpoint_every: CheckpointEvery = None,
    objective: Annotated[Optional[str], typer.Option(help="Diffusion: epsilon, v (velocity) or x0 prediction, or rflow (rectified flow, for few-step sampling) (default: the preset's).")] = None,
    schedule: Annotated[Optional[str], typer.Option(help="DDPM noise schedule: linear (betas given for T=1000, scaled to T) or cosine; every schedule must reach noise (default: the preset's).")] = None,
    train_timesteps: Annotated[Optional[int], typer.Option(help="Training timesteps T (default: the preset's).")] = None,
    gamma: Annotated[Optional[float], typer.Option(help="GANs: R1 weight gamma (default: the preset's).")] = None,
    ada: Annotated[Optional[bool], typer.Option("--ada/--no-ada", help="GANs: adaptive discriminator augmentation (default: on for stylegan2/3).")] = None,
    mirror: Annotated[Optional[bool], typer.Option("--mirror/--no-mirror", help="GANs: random x-flips of the reals D sees (default: on).")] = None,
    growth_steps: Annotated[Optional[int], typer.Option(help="progan/stylegan1: steps per fade-in and per stable phase of progressive growing (0: none).")] = None,
    sg3_config: Annotated[Optional[str], typer.Option("--sg3-config", metavar="t|r", help="stylegan3: t (translation-equivariant, 3×3 convolutions) or r (rotation-equivariant: 1×1 convolutions, radial filters, twice the channels) (default: t).")] = None,
    autoencoder_steps: Annotated[Optional[int], typer.Option(help="ldm: steps of the autoencoder stage (--steps is the diffusion stage's) (default: the preset's).")] = None,
    latent_scaling: Annotated[Optional[str], typer.Option(metavar="minmax|std", help="ldm: latent scaling: minmax (to [-1, 1] with the codebook's range, Khader et al.) or std (divided by the latents' standard deviation, MONAI) (default: the preset's).")] = None,
    resume: ResumeRun = False,
    overwrite: OverwriteRun = False,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, data order and noise (a resumed run keeps its own).")] = 0,
    device: Device = "auto",
    devices: Devices = 1,
    precision: Precision = "auto",
    workers: LoaderWorkers = 0,
    progress: Progress = True,
) -> None:
    """Train a generator on STORE into RUN: checkpoints every --checkpoint-every steps,
    TensorBoard logs in RUN/tensorboard, --resume to continue after an interruption."""
    from synthmed.generators.api import train_generator

    final = train_generator(
        store, run, model=model, preset=preset,
        model_overrides={"objective": objective, "schedule": schedule, "train_timesteps": train_timesteps,
                         "sg3_config": sg3_config, "latent_scaling": latent_scaling},
        train_overrides={"steps": steps, "batch": batch, "lr": lr, "checkpoint_every": checkpoint_every,
                         "num_workers": workers, "r1_gamma": gamma, "ada": ada, "mirror": mirror,
                         "growth_steps": growth_steps, "autoencoder.steps": autoencoder_steps},
        seed=seed, fabric=fabric_options(device, devices, precision),
        resume=resume, overwrite=overwrite, progress=progress,
    )
    if final is not None:
        stdout.print(f"trained {escape(str(run))} to step {final}")


@generator_app.command("sample")
def generator_sample(
    run: Annotated[Path, typer.Argument(help="Run directory (its last checkpoint, EMA weights) or a saved generator folder.")],
    out: Annotated[Path, typer.Argument(help="Synthetic store to write (synthetic: true, with provenance).")],
    n: Annotated[int, typer.Option("--n", help="Number of samples.")] = 16,
    sampler: Annotated[Optional[str], typer.Option(help="ddpm (ancestral), ddim or rflow (default: ddim for DDPM models, rflow for rectified-flow ones; the ldm paper preset: ddpm, the full chain).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Sampler steps K (default: T for ddpm, 50 for ddim and rflow).")] = None,
    truncation: Annotated[Optional[float], typer.Option(help="GANs: truncation psi in (0, 1] (1: none); smaller trades diversity for fidelity.")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed: same seed, batch and sampler → same samples.")] = 0,
    batch: Annotated[int, typer.Option(help="Samples generated at once (memory is flat in --n).")] = 16,
    format: Annotated[str, typer.Option("--format", help="store; nifti (also OUT-nifti/, BraTS layout) or png (also OUT-samples.png).")] = "store",
    device: Device = "auto",
    checkpoint: Annotated[str, typer.Option(help="last or best checkpoint of RUN.")] = "last",
    overwrite: Annotated[bool, typer.Option(help="Replace OUT (and its export) if it exists.")] = False,
    force: Force = False,
    progress: Progress = True,
) -> None:
    """Sample N synthetic image + mask pairs from a trained RUN into the store OUT, in batches."""
    from synthmed.generators.api import sample_run

    store = sample_run(run, out, n=n, sampler=sampler, steps=steps, seed=seed, batch=batch, fmt=format,
                       device=device, checkpoint=checkpoint, overwrite=overwrite, progress=progress,
                       truncation=truncation, force=force)
    prov = store.meta["provenance"]
    psi = f", truncation {prov['truncation']:g}" if "truncation" in prov else ""
    stdout.print(f"wrote {escape(str(out))}: {len(store)} synthetic samples "
                 f"({prov['sampler']} × {prov['steps']} steps, seed {prov['seed']}{psi}, checkpoint step {prov['checkpoint_step']})")


__all__ = ["generator_app", "SynthmedError"]
