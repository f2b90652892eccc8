"""Projecting a store's samples into a StyleGAN's latent space: the store → the latent dictionary, resumable by batch.

:func:`project_store` loads the generator (a StyleGAN 1, 2 or 3 run or saved folder), encodes
the store's samples as the generator was trained to produce them (image channels and mask,
:class:`~synthmed.data.encoding.JointEncoding` of its ``label_mode``), projects them batch by
batch in ascending sample order (:func:`~synthmed.progression.projector.project_images`) and
writes a latent dictionary (:mod:`~synthmed.progression.latents`): each finished batch is
kept in ``OUT.partial``, a killed projection continues from its next batch with
``resume=True``, and ``OUT`` appears only when every batch is done. An image's latent depends
on the seed, its sample index and the settings, not on the batch it is in, so a resumed
projection gives what an uninterrupted one gives.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from synthmed.data.store import Store
from synthmed.atomic import is_empty_dir
from synthmed.errors import OutputExistsError, SynthmedError
from synthmed.features.perceptual import DomainPerceptual, load_domain_perceptual
from synthmed.outputs import check_not_input, guard_output
from synthmed.progress import progress_bar
from synthmed.progression.config import ProjectionConfig
from synthmed.progression.latents import LATENTS, LatentDictionary, LatentWork, n_batches, partial_path, source_rows
from synthmed.progression.projector import project_images
from synthmed.progression.synthesis import StyleSynthesis


def _perceptual(encoder: str | Path | None, config: ProjectionConfig, synthesis: StyleSynthesis,
                device: torch.device) -> DomainPerceptual | None:
    """The domain perceptual distance when the config weights it."""
    if config.perceptual == 0:
        if encoder is not None:
            warnings.warn("an encoder was given but the perceptual weight is 0: it is not used", stacklevel=3)
        return None
    if encoder is None:
        raise SynthmedError("the perceptual term (perceptual > 0) needs a domain encoder run (--encoder)")
    return load_domain_perceptual(encoder, synthesis.encoding.n_image_channels).to(device)


def check_store(store: Store, synthesis: StyleSynthesis) -> None:
    """The store's samples must be what the generator makes.

    Raises:
        SynthmedError: naming both shapes.
    """
    r = synthesis.resolution
    expected = (synthesis.encoding.n_image_channels, r, r)
    if tuple(store.sample_shape) != expected:
        raise SynthmedError(f"{store.path}: samples of shape {list(store.sample_shape)}, but the generator "
                            f"{synthesis.generator.source} makes {list(expected)}")


def project_store(store: str | Path | Store, generator: str | Path, out: str | Path, *,
                  config: ProjectionConfig = ProjectionConfig(), split: str | None = None,
                  indices: Sequence[int] | np.ndarray | None = None, encoder: str | Path | None = None,
                  device: str = "auto", checkpoint: str = "last", resume: bool = False, overwrite: bool = False,
                  progress: bool = True) -> LatentDictionary:
    """Project the samples of ``store`` (all, or those of ``split``) with the StyleGAN ``generator``
    into the latent dictionary ``out`` (the module docstring).

    Args:
        store: the store (or its path).
        generator: a StyleGAN run directory or saved generator folder.
        out: the latent dictionary to write.
        config: space, schedule, batch, loss weights, seed.
        split: project only this split's samples.
        indices: project only these store samples (sorted ascending; they must lie in ``split``
            when both are given), e.g. each subject's baseline.
        encoder: a domain encoder run directory, for ``config.perceptual > 0``.
        device, checkpoint: where to run, and which checkpoint of a run to load.
        resume: continue an unfinished projection into ``out`` (its ``.partial`` folder).
        overwrite: replace an existing ``out`` (and discard an unfinished projection).

    Returns:
        The latent dictionary, opened.

    Raises:
        OutputExistsError: ``out`` exists without ``overwrite`` (checked before any work).
        SynthmedError: not a StyleGAN; store samples the generator does not make; an
            unfinished projection without ``resume`` or of other inputs or settings; a
            perceptual weight without an encoder.
    """
    store = store if isinstance(store, Store) else Store.open(store)
    inputs = [store.path, generator, encoder]
    out = guard_output(out, inputs, kind=LATENTS, overwrite=overwrite, resume=resume)
    check_not_input(partial_path(out), inputs)
    synthesis = StyleSynthesis.load(generator, device=device, checkpoint=checkpoint)
    check_store(store, synthesis)
    perceptual = _perceptual(encoder, config, synthesis, synthesis.device)
    chosen = store.indices(split)
    subset: dict[str, list[int]] = {}
    if indices is not None:
        wanted = np.unique(np.asarray(indices, np.int64))
        outside = np.setdiff1d(wanted, chosen)
        if not len(wanted) or len(outside):
            raise ValueError(f"indices must be a non-empty subset of the samples of split {split}; "
                             f"{outside[:5].tolist()} are not")
        chosen, subset = wanted, {"indices": [int(i) for i in wanted]}
    indices = chosen
    from synthmed.data.fingerprint import store_hash

    job = {"store": {"path": str(Path(store.path).resolve()), "hash": store_hash(store.path), "split": split,
                     "n": int(len(indices)), **subset},
           "generator": synthesis.describe(), "encoder": None if encoder is None else str(Path(encoder).resolve()),
           "space": config.space, "projection": config.model_dump(mode="json")}
    job = json.loads(json.dumps(job))
    if resume and (out / "latents.json").is_file() and not partial_path(out).exists():
        done = LatentDictionary.open(out)
        if {k: done.meta.get(k) for k in job} != job:
            raise SynthmedError(f"{out}: a finished projection of other inputs or settings; choose another output "
                                "or pass --overwrite")
        return done
    if os.path.lexists(out) and not overwrite and not is_empty_dir(out):
        raise OutputExistsError(out)  # what resume cannot continue: refused before any work
    w_avg, w_std = synthesis.w_stats(config.w_avg_samples, config.seed)
    shapes = synthesis.noise_shapes if config.optimise_noise else []
    work = LatentWork.start(out, job, n=len(indices), layers=synthesis.layers(config.space), w_dim=synthesis.w_dim,
                            noise_shapes=shapes, chunk=config.batch, w_avg=w_avg.numpy(), resume=resume,
                            overwrite=overwrite)
    try:
        total = n_batches(len(indices), config.batch)
        with progress_bar(enabled=progress) as bar:
            task = bar.add_task(f"projecting ({config.space}, {config.steps} steps)", total=len(indices),
                                completed=min(work.done * config.batch, len(indices)))
            for b in range(work.done, total):
                idx = indices[b * config.batch : (b + 1) * config.batch]
                images, labels = store.read(idx)
                targets = synthesis.encoding.encode(torch.from_numpy(images), torch.from_numpy(labels))
                result = project_images(synthesis, targets, [int(i) for i in idx], config, w_avg=w_avg, w_std=w_std,
                                        perceptual=perceptual,
                                        on_step=lambda s, m=len(idx): bar.advance(task, m / config.steps))
                work.write(b, b * config.batch, result.w.numpy(), [n.numpy() for n in result.noise],
                           result.loss.numpy(), result.psnr.numpy())
        meta = {**job, "w_std": w_std, "noise_maps": len(shapes)}
        return work.publish(source_rows(store.samples, indices), meta, overwrite=overwrite)
    except BaseException:
        work.release()
        raise


__all__ = ["check_store", "project_store", "project_images"]
