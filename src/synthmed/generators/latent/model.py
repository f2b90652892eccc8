"""``LatentDiffusionGenerator``: the ``ldm`` generator, both stages of latent diffusion in one run directory.

``fit`` trains, in one run folder ``RUN`` (the latent diffusion stage's run directory, kind ``ldm``):

1. the autoencoder stage into ``RUN/autoencoder/``
   (:func:`~synthmed.generators.latent.autoencoder.train_autoencoder`, seed
   ``derive_seed(seed, AUTOENCODER_SEED_STREAM)``);
2. the latent scaling, fitted once on the trained autoencoder and written to
   ``RUN/latent_scaling.json`` (:mod:`~synthmed.generators.latent.scaling`): from then on the
   autoencoder is frozen;
3. the ``ddpm`` generator's diffusion task over the scaled latents
   (:class:`~synthmed.generators.diffusion.task.DiffusionTask` with a
   :class:`~synthmed.generators.latent.codec.LatentCodec`: each batch is encoded on the fly),
   checkpointed in ``RUN/checkpoints/`` like any generator run.

``RUN/run.json`` is written first (before the autoencoder stage), so a run killed in either stage
is an ``ldm`` run that ``--resume`` continues: a killed autoencoder stage resumes first, then the
diffusion stage starts; a killed diffusion stage resumes with the recorded scaling and the
autoencoder as it was. Both stages train at the autoencoder's precision (bf16 mixed on a GPU
with bf16, else 32-bit; fp16 refused) on one Fabric.

``sample`` draws scaled latents with the ``ddpm`` samplers (DDPM, DDIM, rectified flow),
un-scales them and decodes them through the autoencoder (quantized for ``vq``), yielding
``(images, labels)`` like every generator, so ``generator sample`` writes an ordinary store.
A saved folder holds ``generator.json`` (the config, the training store and the scaling),
``model.safetensors`` (the U-Net's EMA weights) and ``autoencoder.safetensors``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Self

import torch

from synthmed.atomic import atomic_directory
from synthmed.config import build_config
from synthmed.data.store import Store
from synthmed.errors import SynthmedError
from synthmed.generators.base import GENERATOR_JSON, WEIGHTS, FitOptions
from synthmed.generators.common import EMATask, TaskGenerator
from synthmed.generators.diffusion.networks import build_unet
from synthmed.generators.diffusion.samplers import resolve_sampler, sample_decoded
from synthmed.generators.diffusion.task import DiffusionTask
from synthmed.generators.latent.autoencoder import (AUTOENCODER_WEIGHTS, Autoencoder, autoencoder_config_for,
                                                    autoencoder_dir, autoencoder_precision, load_autoencoder,
                                                    read_autoencoder, train_autoencoder)
from synthmed.generators.latent.codec import LatentCodec
from synthmed.generators.latent.ldm_config import (LDM_PRESETS, STAGES, LatentDiffusionConfig, LatentDiffusionPreset,
                                                   LatentDiffusionTrainConfig)
from synthmed.generators.latent.scaling import LatentScaling, fit_scaling, read_scaling, write_scaling
from synthmed.training.checkpoint import save_weights
from synthmed.training.fabric import resolve_device
from synthmed.training.run import RUN_JSON
from synthmed.training.seeding import derive_seed

#: ``derive_seed(seed, AUTOENCODER_SEED_STREAM)`` seeds the autoencoder stage of a run of seed ``seed``.
AUTOENCODER_SEED_STREAM = 3


def dotted(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Overrides with each stage part given as a mapping (``{"autoencoder": {"steps": 2}}``)
    spelled as dotted keys (``{"autoencoder.steps": 2}``), so that they change single fields."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in STAGES and isinstance(value, Mapping):
            out.update({f"{key}.{name}": v for name, v in value.items()})
        else:
            out[key] = value
    return out


class LatentDiffusionGenerator(TaskGenerator[LatentDiffusionConfig, LatentDiffusionTrainConfig]):
    """Latent diffusion (Khader et al. 2022): an autoencoder of the joint image + mask encoding,
    and a diffusion model over its latents (see the module docstring).

    Args:
        config: both stages' models; the store-given fields are replaced by the training store's
            on :meth:`fit`. Default: the preset's.
        train: both stages' training. Default: the preset's.
        preset: ``tiny``, ``laptop``, ``small`` or ``paper``
            (:data:`~synthmed.generators.latent.ldm_config.LDM_PRESETS`).

    Attributes:
        codec: after :meth:`fit` or :meth:`load`, the frozen autoencoder and the latent scaling.
    """

    name = "ldm"

    model_config = LatentDiffusionConfig
    train_config_model = LatentDiffusionTrainConfig

    def __init__(self, config: LatentDiffusionConfig | None = None, train: LatentDiffusionTrainConfig | None = None, *,
                 preset: str = "tiny"):
        super().__init__(config, train, preset=preset)
        self.codec: LatentCodec | None = None

    @classmethod
    def presets(cls) -> Mapping[str, LatentDiffusionPreset]:
        return LDM_PRESETS

    @classmethod
    def from_options(cls, preset: str, model_overrides: Mapping[str, Any] = {},
                     train_overrides: Mapping[str, Any] = {}) -> Self:
        """The preset with the overrides applied field by field (bare, dotted or per-stage mappings;
        see :mod:`~synthmed.generators.latent.ldm_config`)."""
        return super().from_options(preset, dotted(model_overrides), dotted(train_overrides))

    @classmethod
    def saved_config(cls, model: Mapping[str, Any], path: Path) -> LatentDiffusionConfig:
        return build_config(LatentDiffusionConfig, f"{path}: bad model config", **model)

    # -- training

    def config_for(self, store: Store) -> LatentDiffusionConfig:
        """Both stages completed for ``store``: the autoencoder with its dims, channels and shape,
        the diffusion U-Net with the latent shape.

        Raises:
            SynthmedError: the samples do not fit the autoencoder, or its latents the U-Net
                (naming ``diffusion.channels`` and ``autoencoder.channels``).
        """
        autoencoder = autoencoder_config_for(self.config.autoencoder, store)
        values = {**self.config.model_dump(), "autoencoder": autoencoder.model_dump()}
        return build_config(LatentDiffusionConfig, f"{store.path}: {store.dims}D samples of shape "
                            f"{list(store.sample_shape)} do not fit the ldm model", **values)

    def make_task(self, config: LatentDiffusionConfig, seed: int) -> EMATask:
        """The diffusion stage's task over :attr:`codec`'s latents (set by :meth:`fit`)."""
        if self.codec is None:
            raise ValueError("the diffusion stage needs the trained autoencoder: fit the generator")
        return DiffusionTask(config.diffusion, self.train_config.diffusion, seed, self.codec)

    @classmethod
    def build_network(cls, config: LatentDiffusionConfig) -> torch.nn.Module:
        """The denoising U-Net, with the autoencoder's latent channels in and out."""
        return build_unet(config.diffusion, config.autoencoder.latent_channels)

    def fit_options(self, run_dir: Path, store: Store, options: FitOptions) -> FitOptions:
        """:meth:`TaskGenerator.fit_options`, then on ``resume`` the autoencoder must not have more
        steps once the diffusion stage has begun; both stages train at the autoencoder's
        precision rule (:func:`autoencoder_precision`).

        Raises:
            SynthmedError: a bad precision, or more ``autoencoder.steps`` after the diffusion
                stage has begun.
        """
        options = super().fit_options(run_dir, store, options)
        if options.resume:
            self._check_frozen_autoencoder(run_dir)
        precision = autoencoder_precision(options.fabric.precision, resolve_device(options.fabric.device))
        return replace(options, fabric=replace(options.fabric, precision=precision))  # type: ignore[arg-type]

    def training_record(self, options: FitOptions) -> dict[str, Any]:
        """Both stages' training configs and the precision they train at."""
        return {**self.train_config.model_dump(mode="json"), "precision": options.fabric.precision}

    def before_task(self, store: Store, run_dir: Path, config: LatentDiffusionConfig, seed: int, fabric: Any,
                    options: FitOptions) -> Any:
        """The autoencoder stage (:meth:`_first_stage`) into :attr:`codec`; the diffusion stage's loop config."""
        self.codec = self._first_stage(store, run_dir, config, seed, fabric, options)
        return self.train_config.diffusion

    def _first_stage(self, store: Store, run_dir: Path, config: LatentDiffusionConfig, seed: int, fabric: Any,
                     options: FitOptions) -> LatentCodec:
        """Train (or resume, or skip when done) the autoencoder stage and fit, or read back, the
        latent scaling; the frozen autoencoder on ``fabric``'s device."""
        scaling = self._check_frozen_autoencoder(run_dir)
        ae_train = self.train_config.autoencoder
        if scaling is None:
            resume = (autoencoder_dir(run_dir) / RUN_JSON).is_file()
            train_autoencoder(store, run_dir, config.autoencoder, ae_train,
                              FitOptions(seed=derive_seed(seed, AUTOENCODER_SEED_STREAM), fabric=options.fabric,
                                         resume=resume, progress=options.progress), fabric=fabric)
        autoencoder = load_autoencoder(run_dir, device="cpu")
        autoencoder.network.to(fabric.device)
        if scaling is None:
            if fabric.is_global_zero:
                write_scaling(run_dir, fit_scaling(autoencoder, store, config.latent_scaling, batch=ae_train.batch))
            fabric.barrier()
            scaling = read_scaling(run_dir)
            assert scaling is not None
        return LatentCodec(_matching(autoencoder, scaling, run_dir), scaling)

    def _check_frozen_autoencoder(self, run_dir: Path) -> LatentScaling | None:
        """The run's latent scaling (``None``: the diffusion stage has not begun), after checking
        that the autoencoder is not asked to train past the step the diffusion stage is trained on.

        Raises:
            SynthmedError: naming ``autoencoder.steps`` and that step.
        """
        scaling = read_scaling(run_dir)
        steps = self.train_config.autoencoder.steps
        if scaling is not None and steps > scaling.autoencoder_step:
            raise SynthmedError(f"{run_dir}: autoencoder.steps {steps}: the diffusion stage is trained on the "
                                f"autoencoder at step {scaling.autoencoder_step}, which can no longer change; start "
                                "a new RUN (or --overwrite) to train the autoencoder longer")
        return scaling

    def trained_data(self, data: dict[str, Any]) -> dict[str, Any]:
        """The store's description plus the latent scaling."""
        assert self.codec is not None
        return {**data, "latent_scaling": self.codec.scaling.to_json()}

    # -- sampling

    def resolve_sampler(self, sampler: str | None, steps: int | None) -> tuple[str, int]:
        """Defaults (the config's ``sampler``, else DDIM or rectified flow) and checks: ``(sampler, steps)``."""
        return resolve_sampler(self.config.diffusion, sampler, steps, default=self.config.sampler)

    def sample(self, n: int, seed: int, *, batch_size: int = 16, sampler: str | None = None, steps: int | None = None,
               on_step: Callable[[int, int], None] | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``n`` decoded samples in batches of ``batch_size`` (see :class:`Generator` and
        :func:`~synthmed.generators.diffusion.samplers.sample_decoded`): scaled latents drawn
        with ``sampler``, un-scaled and decoded through the autoencoder (quantized for ``vq``).
        The same ``(seed, batch_size, sampler, steps)`` on the same device gives the same samples."""
        network = self.sampling_network(n, batch_size)
        sampler, steps = self.resolve_sampler(sampler, steps)
        assert self.codec is not None  # set with the network
        yield from sample_decoded(network, self.config.diffusion, self.codec, n, seed, batch_size=batch_size,
                                  sampler=sampler, steps=steps, device=self.device, on_step=on_step)

    def describe(self) -> dict[str, Any]:
        """:meth:`TaskGenerator.describe` plus the autoencoder's step and the latent scaling mode."""
        out = super().describe()
        if self.codec is not None:
            out.update(autoencoder_step=self.codec.autoencoder.step, latent_scaling=self.codec.scaling.mode)
        return out

    # -- persistence

    def save(self, folder: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``generator.json`` (config, data with the latent scaling, step), ``model.safetensors``
        (the U-Net's EMA weights) and ``autoencoder.safetensors``."""
        if self.network is None or self.codec is None:
            raise SynthmedError("nothing to save: the generator has no weights")
        meta = {"generator": self.name, "model": self.config.model_dump(mode="json"), "data": self.data,
                "step": self.step, "source": self.source}
        folder = Path(folder)
        with atomic_directory(folder, overwrite=overwrite) as tmp:
            (tmp / GENERATOR_JSON).write_text(json.dumps(meta, indent=2) + "\n")
            save_weights(self.network, tmp / WEIGHTS, {"step": str(self.step)})
            save_weights(self.codec.autoencoder.network, tmp / AUTOENCODER_WEIGHTS,
                         {"step": str(self.codec.autoencoder.step)})
        return folder

    @classmethod
    def load(cls, path: str | Path, *, device: str = "auto", checkpoint: str = "last") -> Self:
        """Load the U-Net's EMA weights (:meth:`TaskGenerator.load`), the autoencoder and the
        latent scaling from a run directory or a saved folder.

        Raises:
            SynthmedError: not an ``ldm`` run or saved folder, no diffusion checkpoint yet, or an
                autoencoder checkpoint other than the one the scaling was fitted on.
        """
        gen = super().load(path, device=device, checkpoint=checkpoint)
        path = Path(path)
        config = gen.config.autoencoder
        if (path / GENERATOR_JSON).is_file():
            scaling = LatentScaling.from_json(gen.data.get("latent_scaling"), str(path / GENERATOR_JSON))
            autoencoder = Autoencoder(read_autoencoder(config, path / AUTOENCODER_WEIGHTS), config,
                                      step=scaling.autoencoder_step, source=path, data=gen.data)
        else:
            scaling = read_scaling(path)  # type: ignore[assignment]
            if scaling is None:
                raise SynthmedError(f"{path}: no latent scaling (the autoencoder stage has not finished)")
            autoencoder = _matching(load_autoencoder(path, device="cpu"), scaling, path)
            gen.data["latent_scaling"] = scaling.to_json()
        autoencoder.network.to(gen.device)
        gen.codec = LatentCodec(autoencoder, scaling)
        return gen


def _matching(autoencoder: Autoencoder, scaling: LatentScaling, run_dir: Path) -> Autoencoder:
    """``autoencoder`` if it is the checkpoint the scaling (and the diffusion stage) belongs to.

    Raises:
        SynthmedError: another step (its checkpoint was unreadable and an older one was loaded).
    """
    if autoencoder.step != scaling.autoencoder_step:
        raise SynthmedError(f"{run_dir}: the diffusion stage belongs to the autoencoder at step "
                            f"{scaling.autoencoder_step}, but its readable checkpoint is step {autoencoder.step}; "
                            "that checkpoint is damaged: train a new RUN")
    return autoencoder
