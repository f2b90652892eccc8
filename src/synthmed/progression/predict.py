"""Predicted follow-ups: baselines projected, extrapolated along the k nearest training subjects, synthesised as
image + mask (``synthmed progression predict``).

For baselines ``B`` (store samples, one per subject) and a horizon of ``M`` months:

1. **Projection.** The baselines are projected with the run's generator and projection settings
   into a latent dictionary cached in ``RUN/projections/<store>-<content hash>-<samples hash>/``
   (reused by later calls on the same store content and samples, resumed when killed).
2. **Extrapolation** (:func:`synthmed.progression.extrapolate.extrapolate`) along the training
   trajectories of ``RUN/latents``: the ``k`` training subjects whose baseline latents are
   nearest, never the query's own subject. Distances are taken between the latents' offsets from
   ``w_avg`` (every latent of a StyleGAN's W lies near ``w_avg``, so the raw vectors' cosine says
   little), by cosine (default) or Euclidean distance.
3. **Synthesis.** The combined latent, each neighbour's latent and the baseline's own latent (its
   reconstruction) are rendered with the baseline's optimised noise maps, so the subject's fine
   detail is kept; images in ``[0, 1]``, masks decoded from the generated mask channel.

WT fraction: WT pixels / all pixels of a sample. The uncertainty of a prediction is the spread of
its ``k`` per-neighbour predictions; the predicted WT fraction's interval is their minimum and
maximum.

The store ``predict`` writes (synthetic, one sample per baseline, in subject order) has the
baseline's ``slice`` and ``split``, ``case_id`` ``<subject>-pred-m<M>``, ``subject_id``, ``visit``
−1 (a prediction, not an observed visit), ``months`` = the baseline's months + M (M when they
are unknown), and the extra columns ``baseline_case_id``, ``horizon_months``, ``wt_fraction``
(the combined prediction's), ``wt_fraction_low`` and ``wt_fraction_high`` (the per-neighbour
interval), ``wt_fraction_reconstruction`` (the projected baseline's), ``projection_psnr`` (dB),
``neighbours`` and ``weights`` (``;``-separated, nearest first).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthmed.data.store import Store, StoreWriter
from synthmed.errors import SynthmedError
from synthmed.outputs import STORE, guard_output
from synthmed.progression.api import PROJECTIONS_DIR, ProgressionRun
from synthmed.progression.extrapolate import METRICS, MODES, WEIGHTINGS, extrapolate
from synthmed.progression.followup import baselines, check_one_sample_per_visit
from synthmed.progression.latents import LatentDictionary
from synthmed.progression.synthesis import StyleSynthesis

#: Latents rendered at once.
RENDER_BATCH = 64

__all__ = ["Prediction", "predict_followups", "predict_store", "project_baselines", "wt_fraction"]


def wt_fraction(labels: np.ndarray) -> np.ndarray:
    """float64 ``[N]``: WT pixels (label > 0) / all pixels of each mask of ``labels`` ``[N, *spatial]``."""
    labels = np.asarray(labels)
    return (labels.reshape(len(labels), -1) > 0).mean(axis=1, dtype=np.float64)


@dataclass(frozen=True)
class Prediction:
    """Predicted follow-ups of ``Q`` baselines at one horizon, with ``k`` neighbours each.

    Attributes:
        subjects: str ``[Q]``; baseline: int64 ``[Q]`` store indices of the baselines.
        horizon: months ahead.
        images, labels: float32 ``[Q, C, *sp]`` in [0, 1] and uint8 ``[Q, *sp]``: the prediction.
        reconstruction_images, reconstruction_labels: the baselines' own latents rendered.
        neighbour_wt: float64 ``[Q, k]``: WT fraction of each neighbour's prediction.
        neighbours: ``[Q, k]`` subject ids, nearest first; weights, distances: float64 ``[Q, k]``.
        projection_psnr: float32 ``[Q]``: the baselines' reconstruction PSNR (dB).
        latents: the baselines' latent dictionary.
        generator_data: what the generator recorded about its training data (``store``, ``store_hash``, …).
    """

    subjects: np.ndarray
    baseline: np.ndarray
    horizon: float
    images: np.ndarray
    labels: np.ndarray
    reconstruction_images: np.ndarray
    reconstruction_labels: np.ndarray
    neighbour_wt: np.ndarray
    neighbours: np.ndarray
    weights: np.ndarray
    distances: np.ndarray
    projection_psnr: np.ndarray
    latents: LatentDictionary
    generator_data: dict[str, Any]

    @property
    def wt(self) -> np.ndarray:
        """float64 ``[Q]``: WT fraction of each predicted mask."""
        return wt_fraction(self.labels)

    @property
    def wt_reconstruction(self) -> np.ndarray:
        """float64 ``[Q]``: WT fraction of each baseline's reconstructed mask."""
        return wt_fraction(self.reconstruction_labels)

    @property
    def growth(self) -> np.ndarray:
        """float64 ``[Q]``: predicted WT growth, the prediction's WT fraction minus the reconstruction's
        (both generated, so the generator's own bias in drawing masks cancels; a difference, not a ratio,
        which an empty baseline mask would leave undefined)."""
        return self.wt - self.wt_reconstruction


def projections_folder(run: ProgressionRun, store: Store, indices: np.ndarray) -> Path:
    """``RUN/projections/<store name>-<12 hex of its content hash>-<8 hex of the sample indices>``."""
    from synthmed.data.fingerprint import store_hash

    content = store_hash(store.path).split(":")[-1][:12]
    samples = hashlib.sha256(",".join(str(int(i)) for i in indices).encode()).hexdigest()[:8]
    return run.folder(PROJECTIONS_DIR) / f"{store.path.name}-{content}-{samples}"


def project_baselines(run: ProgressionRun, store: Store, indices: np.ndarray, *, device: str = "auto",
                      progress: bool = True) -> LatentDictionary:
    """The latent dictionary of ``store``'s samples ``indices`` projected as the run's training visits were
    (cached in ``RUN/projections/``, the module docstring)."""
    from synthmed.progression.project import project_store

    out = projections_folder(run, store, np.asarray(indices))
    out.parent.mkdir(parents=True, exist_ok=True)
    return project_store(store, run.generator, out, config=run.projection, indices=indices, encoder=run.encoder,
                         device=device, resume=True, progress=progress)


def _render(synthesis: StyleSynthesis, w: np.ndarray, noise: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Decoded samples of latents ``w`` ``[N, L, D]`` with noise maps ``[N, 1, H_i, W_i]``, in batches."""
    images, labels = [], []
    for start in range(0, len(w), RENDER_BATCH):
        part = slice(start, start + RENDER_BATCH)
        x, y = synthesis.render(torch.from_numpy(np.ascontiguousarray(w[part], np.float32)),
                                [torch.from_numpy(np.ascontiguousarray(n[part])) for n in noise] or None)
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels)


def _check_choice(option: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise SynthmedError(f"{option} must be one of {', '.join(choices)}, got {value!r}")


def predict_followups(run: ProgressionRun, store: Store, indices: np.ndarray, subjects: Sequence[str],
                      horizon: float, *, k: int = 3, metric: str = "cosine", weighting: str = "inverse",
                      mode: str = "endpoints", device: str = "auto", progress: bool = True) -> Prediction:
    """Predict the follow-ups of ``store``'s baseline samples ``indices`` (of ``subjects``) ``horizon``
    months ahead (the module docstring).

    Raises:
        SynthmedError: a bad ``k``, ``metric``, ``weighting``, ``mode`` or horizon; samples the
            generator does not make; no eligible training neighbour.
    """
    from synthmed.progression.project import check_store

    _check_choice("--metric", metric, METRICS)
    _check_choice("--weighting", weighting, WEIGHTINGS)
    _check_choice("--mode", mode, MODES)
    if k < 1:
        raise SynthmedError(f"--k must be >= 1, got {k}")
    if not (np.isfinite(horizon) and horizon >= 0):
        raise SynthmedError(f"--months must be a number of months >= 0, got {horizon}")
    indices = np.asarray(indices, np.int64)
    subjects = np.asarray(subjects).astype(str)
    if len(indices) != len(subjects) or not len(indices):
        raise ValueError(f"{len(indices)} baselines for {len(subjects)} subjects")
    synthesis = StyleSynthesis.load(run.generator, device=device)
    check_store(store, synthesis)
    training = run.latents()
    latents = project_baselines(run, store, indices, device=device, progress=progress)
    rows = {int(i): r for r, i in enumerate(latents.samples["index"].to_numpy(np.int64))}
    order = np.array([rows[int(i)] for i in indices], np.int64)
    w, noise = latents.w(order), latents.noise(order)
    result = extrapolate(w, training.trajectories(), float(horizon), query_subjects=list(subjects), k=k,
                         metric=metric, weighting=weighting, mode=mode, center=training.w_avg())
    images, labels = _render(synthesis, result.latent, noise)
    recon_images, recon_labels = _render(synthesis, w.astype(np.float64), noise)
    kk = result.per_neighbour.shape[1]
    flat = result.per_neighbour.reshape(len(w) * kk, *w.shape[1:])
    _, neighbour_labels = _render(synthesis, flat, [np.repeat(n, kk, axis=0) for n in noise])
    return Prediction(subjects=subjects, baseline=indices, horizon=float(horizon), images=images, labels=labels,
                      reconstruction_images=recon_images, reconstruction_labels=recon_labels,
                      neighbour_wt=wt_fraction(neighbour_labels).reshape(len(w), kk),
                      neighbours=result.neighbours.astype(str), weights=result.weights, distances=result.distances,
                      projection_psnr=latents.samples["psnr"].to_numpy(np.float32)[order], latents=latents,
                      generator_data=dict(synthesis.generator.data or {}))


def baseline_samples(store: Store, split: str | None) -> tuple[np.ndarray, np.ndarray]:
    """``(store indices, subjects)`` of each subject's baseline in ``split`` (``None``: all).

    Raises:
        SynthmedError: no such split, or several samples at one visit.
    """
    if split is not None and split not in store.splits:
        raise SynthmedError(f"{store.path}: no {split!r} split (splits: {list(store.splits)}); choose one with --split")
    check_one_sample_per_visit(store.samples, str(store.path), split)
    base = baselines(store.samples, split)
    return base["index"].to_numpy(np.int64), base["subject"].to_numpy(str)


def prediction_rows(prediction: Prediction, store: Store) -> list[dict[str, Any]]:
    """The ``samples.csv`` rows of the predicted store (the module docstring)."""
    table = store.samples.iloc[prediction.baseline]
    low, high = prediction.neighbour_wt.min(axis=1), prediction.neighbour_wt.max(axis=1)
    wt, recon = prediction.wt, prediction.wt_reconstruction
    rows = []
    for q, (_, sample) in enumerate(table.iterrows()):
        months = float(sample["months"])
        rows.append({
            "case_id": f"{prediction.subjects[q]}-pred-m{prediction.horizon:g}", "slice": int(sample["slice"]),
            "split": str(sample["split"]), "source": "progression",
            "spacing_z": float(sample["spacing_z"]), "spacing_y": float(sample["spacing_y"]),
            "spacing_x": float(sample["spacing_x"]),
            "subject_id": str(prediction.subjects[q]), "visit": -1,
            "months": prediction.horizon + (months if np.isfinite(months) else 0.0),
            "baseline_case_id": str(sample["case_id"]), "horizon_months": prediction.horizon,
            "wt_fraction": float(wt[q]), "wt_fraction_low": float(low[q]), "wt_fraction_high": float(high[q]),
            "wt_fraction_reconstruction": float(recon[q]), "projection_psnr": float(prediction.projection_psnr[q]),
            "neighbours": ";".join(prediction.neighbours[q]),
            "weights": ";".join(f"{v:.6g}" for v in prediction.weights[q]),
        })
    return rows


def predict_store(run: str | Path, store: str | Path, out: str | Path, horizon: float, *, split: str | None = "test",
                  k: int = 3, metric: str = "cosine", weighting: str = "inverse", mode: str = "endpoints",
                  device: str = "auto", overwrite: bool = False, progress: bool = True) -> Store:
    """Write the predicted follow-ups of each subject's baseline in ``store``'s ``split`` (``None``: all
    samples) ``horizon`` months ahead as the synthetic store ``out`` (the module docstring).

    Raises:
        OutputExistsError: ``out`` exists without ``overwrite`` (checked before any work).
        SynthmedError: an unfinished or missing progression run, a store the generator does not
            make or with several samples per visit, bad options, no eligible training neighbour.
    """
    out = guard_output(out, [run, store], kind=STORE, overwrite=overwrite)
    prun = ProgressionRun.open(run)
    opened = Store.open(store)
    indices, subjects = baseline_samples(opened, split)
    prediction = predict_followups(prun, opened, indices, subjects, horizon, k=k, metric=metric, weighting=weighting,
                                   mode=mode, device=device, progress=progress)
    from synthmed.data.fingerprint import store_hash

    generator = prediction.latents.meta["generator"]
    gen_data = prediction.generator_data
    provenance = {"kind": "progression prediction", "progression_run": str(prun.path.resolve()),
                  "generator": generator.get("generator"), "run": generator.get("run"),
                  "checkpoint_step": generator.get("step"), "baseline_store": str(opened.path.resolve()),
                  "baseline_store_hash": store_hash(opened.path), "split": split, "months": float(horizon),
                  "k": int(prediction.neighbours.shape[1]), "metric": metric, "weighting": weighting, "mode": mode,
                  "baseline_latents": str(prediction.latents.path.resolve()),
                  "trained_on": gen_data.get("store"), "trained_on_hash": gen_data.get("store_hash")}
    with StoreWriter(out, dims=opened.dims, channels=opened.channels, sample_shape=opened.sample_shape,
                     spacing=opened.spacing, normalisation=dict(opened.meta.get("normalisation", {})),
                     provenance=provenance, synthetic=True, overwrite=overwrite) as writer:
        writer.append(prediction.images.astype(np.float32), prediction.labels.astype(np.uint8),
                      prediction_rows(prediction, opened))
    return writer.store

