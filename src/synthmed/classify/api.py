"""The functions behind ``synthmed classify train`` (the CLI only parses), and loading a trained classifier.

Run directory of a classifier (the :mod:`synthmed.training.run` layout)::

    RUN/
      run.json      kind "classifier"; model (task, network, mode, stem, width, shapes, outputs);
                    training (steps, lr, the training attack, …, preset, weights); data (the
                    training-set description, as for segmenters); seed; versions
      state.json    last and best checkpoint
      checkpoints/  step_*/model.safetensors, best/ (lowest validation clean BCE, the
                    paper's rule, or robust BCE with ``select="robust"``)
      eval/         <test-store-name>.json, .csv and _eps.png written by ``classify eval``
      saliency/     <test-store-name>_<method>.json and .png written by ``classify saliency``

Training sets are built as for segmenters (:func:`synthmed.segmentation.data.build_training_set`):
the ``train`` splits of one or more stores (real, synthetic or both), validation subjects held
out by ``subject_id`` (a patient's visits together; a cross-sectional store's case ids),
``subject_fraction`` for the data-size curve; batches mix patients
(:func:`~synthmed.training.data.batch_stream`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from synthmed.classify.config import PRESETS, ClassifierModelConfig, ClassifierTrainConfig
from synthmed.classify.names import MODES, NETWORKS, TASKS
from synthmed.classify.networks import classifier_for
from synthmed.classify.samples import check_learnable
from synthmed.classify.targets import label_names
from synthmed.classify.task import ClassificationTask
from synthmed.config import build_config
from synthmed.data.store import Store
from synthmed.errors import SynthmedError
from synthmed.generators.common import open_training_run
from synthmed.outputs import guard_output, run_directory
from synthmed.segmentation.data import build_training_set
from synthmed.training.data import batch_stream
from synthmed.training.fabric import FabricOptions, make_fabric
from synthmed.training.loop import LoopOptions, train
from synthmed.training.run import RUN_JSON, read_run
from synthmed.training.weights import load_run_network

KIND = "classifier"


def _choice(option: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise SynthmedError(f"{option} must be one of {', '.join(choices)}, got {value!r}")


def resolve_configs(task: str, model: str, mode: str, preset: str, model_overrides: Mapping[str, Any] = {},
                    train_overrides: Mapping[str, Any] = {}) -> tuple[ClassifierModelConfig, ClassifierTrainConfig]:
    """The preset's configs for ``task``, network ``model`` and ``mode``, with the non-``None`` overrides.

    Raises:
        SynthmedError: unknown preset, task, network or mode, or a bad override (naming the field).
    """
    _choice("--preset", preset, tuple(PRESETS))
    _choice("--task", task, TASKS)
    _choice("--model", model, NETWORKS)
    _choice("--mode", mode, MODES)
    values = PRESETS[preset].model.model_dump()
    values.update({k: v for k, v in model_overrides.items() if v is not None}, task=task, network=model, mode=mode,
                  num_outputs=len(label_names(task)))
    config = build_config(ClassifierModelConfig, "model options", **values)
    tvalues = PRESETS[preset].train.model_dump()
    tvalues.update({k: v for k, v in train_overrides.items() if v is not None})
    return config, build_config(ClassifierTrainConfig, "training options", **tvalues)


def config_for(config: ClassifierModelConfig, store: Store) -> ClassifierModelConfig:
    """``config`` completed with ``store``'s dims, channels and spatial shape."""
    values = config.model_dump()
    values.update(spatial_dims=store.dims, in_channels=store.sample_shape[0], image_shape=tuple(store.spatial_shape))
    return build_config(ClassifierModelConfig, f"{store.path}: {store.dims}D samples of shape "
                        f"{list(store.sample_shape)} do not fit the {config.network}", **values)


def train_classifier(
    out: str | Path,
    train_stores: Sequence[str | Path],
    *,
    task: str = "presence",
    model: str = "resnet18",
    mode: str = "standard",
    preset: str = "tiny",
    subject_fraction: float = 1.0,
    weights: str | Path | None = None,
    model_overrides: Mapping[str, Any] = {},
    train_overrides: Mapping[str, Any] = {},
    seed: int = 0,
    fabric: FabricOptions = FabricOptions(),
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> int | None:
    """Train a classifier on ``train_stores`` into the run directory ``out``.

    Args:
        out: the run directory.
        train_stores: one or more stores (real and/or synthetic); their ``train`` splits.
        task: ``presence``, ``regions`` or ``grade`` (:mod:`synthmed.classify.targets`).
        model: ``resnet18``, ``resnet50`` or ``densenet121`` (MONAI, from scratch).
        mode: ``standard``, ``adversarial`` or ``dual-bn`` (:mod:`synthmed.classify.task`).
        preset: ``tiny``, ``laptop``, ``small`` or ``paper`` (:data:`~synthmed.classify.config.PRESETS`).
        subject_fraction: share of real training subjects kept (the data-size curve).
        weights: a ``.safetensors`` file of the user's to initialise from (no downloads).
        model_overrides, train_overrides: CLI options (``None`` = preset value).
        seed: run seed (initialisation, validation split, data order, attack starts).
        fabric: device, processes, precision.
        resume, overwrite: see :func:`~synthmed.training.run.open_run`.

    Returns:
        The final step (``None`` on DDP ranks other than 0).

    Raises:
        SynthmedError: bad options, stores that do not match each other, a weights file that
            does not fit, or the run being resumed; an existing ``out`` without ``resume``/``overwrite``.
    """
    out = guard_output(out, [*train_stores, weights], kind=run_directory("classifier run", [KIND]),
                       overwrite=overwrite, resume=resume)
    config, tc = resolve_configs(task, model, mode, preset, model_overrides, train_overrides)
    stores = [Store.open(p) for p in train_stores]
    if not stores:
        raise SynthmedError("give at least one training store (--train STORE)")
    config = config_for(config, stores[0])
    if weights is not None:
        classifier_for(config, weights)  # refuses a file that does not fit before anything is written
    if resume and (out / RUN_JSON).is_file():
        seed = int(read_run(out).get("seed", seed))  # a resumed run keeps its seed, hence its split
    data = build_training_set(stores, seed=seed, val_fraction=tc.val_fraction, subject_fraction=subject_fraction)
    check_learnable(data.train.parts, task)
    fab = make_fabric(fabric)
    training = dict(tc.model_dump(mode="json"), preset=preset, weights=None if weights is None else str(weights))
    run = open_training_run(out, fab, kind=KIND, model=config.model_dump(mode="json"), training=training,
                            seed=seed, data=data.description, resume=resume, overwrite=overwrite)
    seed = int(run.info["seed"])
    task_ = ClassificationTask(config, tc, seed, val=data.val, init_weights=None if weights is None else str(weights))
    has_val = len(data.val) > 0

    def batches(start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return batch_stream(data.train, tc.batch, seed=seed, start_step=start, rank=fab.global_rank,
                            world_size=fab.world_size, num_workers=tc.num_workers,
                            pin_memory=fab.device.type == "cuda")

    loop = LoopOptions(steps=tc.steps, checkpoint_every=tc.checkpoint_every, log_every=tc.log_every,
                       validate_every=(tc.validate_every or tc.steps) if has_val else 0,
                       monitor=task_.monitor if has_val else None, mode="min",
                       progress=progress and fab.is_global_zero,
                       description=f"{config.network} {config.mode} {Path(out).name}")
    final = train(task_, fab, run, batches, loop)
    return final if fab.is_global_zero else None


def load_classifier(run_dir: str | Path, *, checkpoint: str = "auto", device: str = "auto"
                    ) -> tuple[torch.nn.Module, ClassifierModelConfig, dict[str, Any], dict[str, Any]]:
    """The trained network of a classifier run, in eval mode on ``device``.

    Returns:
        ``(network, model config, run_info, {"name", "step"})``.

    Raises:
        SynthmedError: a missing run, not a classifier run, or no checkpoint.
    """
    def config_of(info: Mapping[str, Any]) -> ClassifierModelConfig:
        return build_config(ClassifierModelConfig, f"{run_dir}: bad model config", **info["model"])

    net, info, ckpt = load_run_network(run_dir, KIND, lambda info: classifier_for(config_of(info)),
                                       checkpoint=checkpoint, device=device)
    return net, config_of(info), info, ckpt
