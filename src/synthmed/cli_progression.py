"""``synthmed progression …``: disease progression by style-based manifold extrapolation (Han et al. 2021) —
project the training subjects' visits into a StyleGAN's latent space, predict test subjects' follow-ups
(image and tumour mask), score the progression risk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from synthmed.cli_options import Device, Json, NBoot, Progress, ProgressBars

progression_app = typer.Typer(
    help="Disease progression (Han et al. 2021): fit projects a longitudinal store's training subjects into a "
    "StyleGAN's latent space; predict extrapolates each baseline along its k nearest training subjects' "
    "trajectories and synthesises the follow-up image and mask; evaluate scores the progression risk "
    "(AUROC for fast progressors, beside an end-to-end classifier) and the predicted follow-ups "
    "(against copying the baseline).", no_args_is_help=True)
stdout = Console(soft_wrap=True)  # like synthmed.cli: results on stdout, unwrapped

# The run and the extrapolation options of predict and evaluate (synthmed.progression.extrapolate).
FittedRun = Annotated[Path, typer.Argument(help="Progression run directory (synthmed progression fit).")]
Neighbours = Annotated[int, typer.Option("--k", help="Nearest training subjects (matched at their baselines, never the "
                                                     "subject itself) whose trajectories are combined.")]
Metric = Annotated[str, typer.Option(help="Distance between latents (offsets from w_avg): cosine or euclidean.")]
Weighting = Annotated[str, typer.Option(help="Weights of the neighbours: inverse (1 / distance), softmax or uniform.")]
Mode = Annotated[str, typer.Option(help="endpoints (a neighbour's last visit minus its baseline, scaled by the horizon "
                                        "over its span: the paper's) or piecewise (its visits interpolated at the "
                                        "horizon).")]


@progression_app.command("fit")
def progression_fit(
    store: Annotated[Path, typer.Argument(help="Longitudinal store (one sample per visit; subject_id, visit, months); its train split is projected.")],
    run: Annotated[Path, typer.Argument(help="Progression run directory to write (run.json, latents/, later projections/, baselines/, eval/).")],
    generator: Annotated[Path, typer.Option("--generator", help="StyleGAN 1, 2 or 3 run directory (or saved folder) trained on the store's samples.")],
    space: Annotated[str, typer.Option(help="w (one style vector per image, broadcast to every layer) or wplus (one per layer).")] = "w",
    steps: Annotated[Optional[int], typer.Option(help="Adam steps per image (default 1000, NVlabs' projector).", show_default=False)] = None,
    batch: Annotated[Optional[int], typer.Option(help="Images projected together (default 16; changes only the speed).", show_default=False)] = None,
    ms_ssim: Annotated[Optional[float], typer.Option(help="Weight of 1 − MS-SSIM in the distance (default 0; pixel L2 weighs 1).", show_default=False)] = None,
    mask_weight: Annotated[Optional[float], typer.Option(help="Weight of the mask channels' pixel error against the image channels' 1 (default 1; a tumour of a few pixels barely moves the mean otherwise).", show_default=False)] = None,
    perceptual: Annotated[Optional[float], typer.Option(help="Weight of the domain-encoder feature distance (default 0; needs --encoder).", show_default=False)] = None,
    encoder: Annotated[Optional[Path], typer.Option(help="Domain encoder run for the perceptual term.")] = None,
    classifier: Annotated[Optional[Path], typer.Option(help="Grade classifier run (synthmed classify train with --task grade) that scores the risk in evaluate.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of w_avg's latents, the initial noise maps and the w noise.")] = 0,
    device: Device = "auto",
    resume: Annotated[bool, typer.Option(help="Continue a killed fit of RUN (its projection resumes from its next batch).")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace RUN if it exists (a progression run only).")] = False,
    progress: Progress = True,
) -> None:
    """Project the training subjects' visits into the StyleGAN's latent space.

    Every visit of the store's train split becomes a latent (the latent dictionary RUN/latents);
    RUN/run.json records the generator, the projection settings and the grade classifier."""
    from synthmed.config import build_config
    from synthmed.progression.api import fit_progression
    from synthmed.progression.config import ProjectionConfig

    options = {"space": space, "steps": steps, "batch": batch, "ms_ssim": ms_ssim, "mask_weight": mask_weight, "perceptual": perceptual,
               "seed": seed}
    config = build_config(ProjectionConfig, "projection options", **{k: v for k, v in options.items() if v is not None})
    latents = fit_progression(store, run, generator, config=config, classifier=classifier, encoder=encoder,
                              device=device, resume=resume, overwrite=overwrite, progress=progress)
    table = latents.samples
    stdout.print(f"projected {len(latents)} visits of {table['subject'].nunique()} training subjects into "
                 f"{escape(str(latents.path))} ({latents.space}, {config.steps} steps; PSNR mean "
                 f"{table['psnr'].mean():.1f} dB, min {table['psnr'].min():.1f} dB)")


@progression_app.command("predict")
def progression_predict(
    run: FittedRun,
    out: Annotated[Path, typer.Argument(help="Store to write: one predicted follow-up (image and mask) per subject, synthetic.")],
    baseline: Annotated[Path, typer.Option("--baseline", help="Store holding the subjects' baselines (each subject's first visit is used).")],
    months: Annotated[float, typer.Option("--months", help="Horizon: months after the baseline to predict.")],
    split: Annotated[str, typer.Option(help="Split of --baseline whose subjects are predicted: test, train or all.")] = "test",
    k: Neighbours = 3,
    metric: Metric = "cosine",
    weighting: Weighting = "inverse",
    mode: Mode = "endpoints",
    device: Device = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it is a store.")] = False,
    progress: Progress = True,
) -> None:
    """Predict each subject's follow-up (image and mask) --months ahead, as a store.

    Each subject's baseline is projected (cached in RUN/projections), extrapolated along the k nearest
    training subjects' trajectories and synthesised; samples.csv holds the predicted WT fraction and
    its per-neighbour interval."""
    from synthmed.progression.predict import predict_store

    written = predict_store(run, baseline, out, months, split=None if split == "all" else split, k=k, metric=metric,
                            weighting=weighting, mode=mode, device=device, overwrite=overwrite, progress=progress)
    table = written.samples
    stdout.print(f"wrote {escape(str(written.path))}: {len(written)} predicted follow-ups {months:g} months ahead; "
                 f"WT fraction mean {table['wt_fraction'].mean():.4f} (per-neighbour interval mean width "
                 f"{(table['wt_fraction_high'] - table['wt_fraction_low']).mean():.4f})")


def _ci(value: Optional[float], ci: list) -> str:
    if value is None:
        return "—"
    low, high = ci
    return f"{value:.3f}" + ("" if low is None else f" [{low:.3f}, {high:.3f}]")


def _f(value: Optional[float], digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


@progression_app.command("evaluate")
def progression_evaluate(
    run: FittedRun,
    test: Annotated[Path, typer.Option("--test", help="Longitudinal store whose test split holds the test subjects (baselines and follow-ups).")],
    months: Annotated[Optional[float], typer.Option(help="Horizon in months (default: the latest at which at least half the test subjects have a visit).", show_default=False)] = None,
    k: Neighbours = 3,
    metric: Metric = "cosine",
    weighting: Weighting = "inverse",
    mode: Mode = "endpoints",
    classifier: Annotated[Optional[Path], typer.Option(help="Grade classifier run for the risk (default: the one fit recorded; without one there is no risk).")] = None,
    baseline: Annotated[bool, typer.Option("--baseline/--no-baseline", help="Train (once, in RUN/baselines) and score the end-to-end classifier of fast progression on baseline images.")] = True,
    baseline_model: Annotated[str, typer.Option(help="Its network: resnet18, resnet50 or densenet121.")] = "resnet18",
    baseline_preset: Annotated[str, typer.Option(help="Its classifier preset: tiny, laptop, small or paper.")] = "tiny",
    baseline_steps: Annotated[Optional[int], typer.Option(help="Its training steps (default: the preset's).", show_default=False)] = None,
    n_boot: NBoot = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and of the baseline classifier.")] = 0,
    gallery_subjects: Annotated[int, typer.Option(help="Subjects shown in the gallery (fast progressors first).")] = 8,
    out: Annotated[Optional[Path], typer.Option(help="Folder of the JSON, CSV and gallery PNG (default RUN/eval).")] = None,
    as_json: Json = False,
    device: Device = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace the JSON, CSV and PNG if they exist.")] = False,
    progress: ProgressBars = True,
) -> None:
    """Score the risk of fast progression and the predicted follow-ups on the test subjects.

    AUROC for fast progressors with subject-bootstrap intervals: the paper's risk (the grade classifier
    on the baseline and the predicted follow-up), the predicted WT growth and the end-to-end baseline
    classifier. Predicted follow-ups against the true ones (image MAE and PSNR, WT Dice, Spearman of WT
    volume), beside copying the baseline. Writes <store>-m<M>.json, .csv and _gallery.png."""
    from synthmed.progression.evaluate import evaluate_progression

    result = evaluate_progression(run, test, months=months, k=k, metric=metric, weighting=weighting, mode=mode,
                                  classifier=classifier, baseline=baseline, baseline_network=baseline_model,
                                  baseline_preset=baseline_preset, baseline_steps=baseline_steps, n_boot=n_boot,
                                  seed=seed, gallery_subjects=gallery_subjects, out=out, device=device,
                                  overwrite=overwrite, progress=progress)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    counts = result["subjects"]
    scores = Table("score of fast progression", "AUROC [95 % CI]",
                   title=f"{counts['test']} test subjects ({counts['fast']} fast, {counts['slow']} slow), "
                         f"{result['months']:g} months ahead, k = {result['extrapolation']['k']}", title_justify="left")
    for key, name in (("risk", "risk (grade classifier, predicted follow-up)"), ("growth", "predicted WT growth"),
                      ("baseline", "end-to-end baseline classifier"),
                      ("risk_true_followup", "risk with the true follow-up (reference)")):
        scores.add_row(name, _ci(result[f"{key}_auroc"], result[f"{key}_auroc_ci"]))
    stdout.print(scores)
    follow = Table("subjects", "predictor", "MAE", "PSNR (dB)", "WT Dice", title="follow-up vs the true one",
                   title_justify="left")
    for group in ("all", "fast"):
        for who in ("predicted", "copy_baseline"):
            m = result["followup"][group][who]
            follow.add_row(f"{group} ({result['followup'][group]['n']})", who.replace("_", " "), _f(m["mae"], 4),
                           _f(m["psnr"], 2), _f(m["wt_dice"]))
    stdout.print(follow)
    rho = result["wt_spearman"]
    stdout.print(f"Spearman of WT volume with the true follow-up's: predicted {_f(rho['predicted'])}, copy baseline "
                 f"{_f(rho['copy_baseline'])}; per-neighbour WT interval covers {result['wt_interval']['coverage']:.0%}")
    for what, why in result["skipped"].items():
        stdout.print(f"[yellow]{escape(what)}: {escape(why)}")
    stdout.print(f"files: {escape(result['files']['json'])}, .csv, _gallery.png")


__all__ = ["progression_app"]
