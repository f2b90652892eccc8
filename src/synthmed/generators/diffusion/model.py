"""``DiffusionGenerator``: the ``ddpm`` generator (DDPM or rectified flow) behind :class:`Generator`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from synthmed.data.encoding import JointEncoding
from synthmed.data.store import Store
from synthmed.errors import SynthmedError
from synthmed.config import build_config
from synthmed.generators.base import FitOptions, Generator
from synthmed.generators.common import (
    check_resume_store,
    find_weights,
    open_training_run,
    override,
    save_generator,
    store_data,
)
from synthmed.generators.config import PRESETS, DiffusionModelConfig, TrainConfig
from synthmed.generators.diffusion.networks import build_unet
from synthmed.generators.diffusion.samplers import check_sampler, default_sampler, default_steps, sample_encoded
from synthmed.generators.diffusion.task import DiffusionTask
from synthmed.training.checkpoint import load_weights
from synthmed.training.data import batch_stream
from synthmed.training.ema import EMA
from synthmed.training.fabric import make_fabric, resolve_device
from synthmed.training.loop import LoopOptions, train
from synthmed.training.seeding import derive_seed, make_generator


class DiffusionGenerator(Generator):
    """A denoising-diffusion generator of jointly encoded image + mask samples.

    Args:
        config: the model; ``spatial_dims``, ``image_channels`` and ``image_shape`` are
            replaced by the training store's on :meth:`fit`. Default: the preset's.
        train: training settings. Default: the preset's.
        preset: ``tiny``, ``small`` or ``paper`` (see :data:`~synthmed.generators.config.PRESETS`).
    """

    name = "ddpm"

    def __init__(self, config: DiffusionModelConfig | None = None, train: TrainConfig | None = None, *,
                 preset: str = "tiny"):
        if preset not in PRESETS:
            raise SynthmedError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        self.config = config or PRESETS[preset].model
        self.train_config = train or PRESETS[preset].train
        self.network: torch.nn.Module | None = None
        self.device = torch.device("cpu")
        self.data: dict[str, Any] = {}
        self.step = 0
        self.source: str | None = None
        self.global_rank = 0  # set by fit (DDP rank)

    @classmethod
    def from_options(cls, preset: str, model_overrides: Mapping[str, Any] = {},
                     train_overrides: Mapping[str, Any] = {}) -> DiffusionGenerator:
        """The preset's config with the non-``None`` overrides (CLI options) applied."""
        if preset not in PRESETS:
            raise SynthmedError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        config = override(DiffusionModelConfig, PRESETS[preset].model, model_overrides, "model options")
        train = override(TrainConfig, PRESETS[preset].train, train_overrides, "training options")
        return cls(config, train, preset=preset)

    @property
    def encoding(self) -> JointEncoding:
        return JointEncoding(self.config.image_channels, self.config.label_mode)

    # -- training

    def config_for(self, store: Store) -> DiffusionModelConfig:
        """The model config completed with ``store``'s dims, channels and shape.

        Raises:
            SynthmedError: the store's shape does not fit the network (e.g. sides not
                divisible by ``2**(levels - 1)``).
        """
        values = self.config.model_dump()
        values.update(spatial_dims=store.dims, image_channels=store.sample_shape[0],
                      image_shape=tuple(store.sample_shape[1:]))
        return build_config(DiffusionModelConfig, f"{store.path}: {store.dims}D samples of shape "
                            f"{store.sample_shape} do not fit the model", **values)

    def fit(self, store: Store, run_dir: str | Path, options: FitOptions) -> int:
        """Train on ``store``'s ``train`` split into ``run_dir`` (see :class:`Generator`).

        Raises:
            DataError: the store has no ``train`` samples.
            SynthmedError / OutputExistsError: see :func:`~synthmed.training.run.open_run`.
        """
        run_dir = Path(run_dir)
        data = store_data(store)  # DataError if there is no train split
        config = self.config_for(store)
        if options.resume:
            check_resume_store(run_dir, store)
        fabric = make_fabric(options.fabric)
        run = open_training_run(run_dir, fabric, kind=self.name, model=config.model_dump(mode="json"),
                                training=self.train_config.model_dump(mode="json"), seed=options.seed, data=data,
                                resume=options.resume, overwrite=options.overwrite)
        seed = int(run.info["seed"])
        task = DiffusionTask(config, self.train_config, seed)
        dataset = store.dataset(split="train")
        tc = self.train_config

        def batches(start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            return batch_stream(dataset, tc.batch, seed=seed, start_step=start, rank=fabric.global_rank,
                                world_size=fabric.world_size, num_workers=tc.num_workers,
                                pin_memory=fabric.device.type == "cuda")

        loop = LoopOptions(steps=tc.steps, checkpoint_every=tc.checkpoint_every, log_every=tc.log_every,
                           image_every=tc.image_every, progress=options.progress and fabric.is_global_zero,
                           description=f"{self.name} {run_dir.name}")
        final = train(task, fabric, run, batches, loop)
        self.config, self.network, self.device = config, task.ema.module.eval(), fabric.device
        self.data, self.step, self.source = data, final, str(run_dir)
        self.global_rank = fabric.global_rank
        return final

    # -- sampling

    def resolve_sampler(self, sampler: str | None, steps: int | None) -> tuple[str, int]:
        """Defaults and checks: ``(sampler, steps)``."""
        sampler = sampler or default_sampler(self.config)
        steps = steps or default_steps(self.config, sampler)
        check_sampler(self.config, sampler, steps)
        return sampler, steps

    def sample(self, n: int, seed: int, *, batch_size: int = 16, sampler: str | None = None, steps: int | None = None,
               on_step: Callable[[int, int], None] | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``n`` samples in batches of ``batch_size`` (see :class:`Generator`).

        Batch ``b`` draws all its noise from a generator seeded by ``(seed, b)``: the same
        ``(seed, batch_size, sampler, steps)`` on the same device gives the same samples.

        Args:
            on_step: ``(batch_samples, total_steps)`` callback after each network evaluation.
        """
        if self.network is None:
            raise SynthmedError("this generator has no weights: fit or load it first")
        if n < 1 or batch_size < 1:
            raise SynthmedError(f"--n and --batch must be >= 1, got {n} and {batch_size}")
        sampler, steps = self.resolve_sampler(sampler, steps)
        encoding = self.encoding
        self.network.eval()
        for b, start in enumerate(range(0, n, batch_size)):
            m = min(batch_size, n - start)
            gen = make_generator(derive_seed(seed, b), self.device)
            tick = (lambda m=m: on_step(m, steps)) if on_step else None
            x = sample_encoded(self.network, self.config, m, sampler=sampler, steps=steps, generator=gen,
                               device=self.device, on_step=tick)
            images, labels = encoding.decode(x.cpu())
            yield images, labels

    # -- persistence

    def save(self, folder: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``generator.json`` (name, model config, data, step) and ``model.safetensors`` (EMA weights)."""
        if self.network is None:
            raise SynthmedError("nothing to save: the generator has no weights")
        meta = {"generator": self.name, "model": self.config.model_dump(mode="json"), "data": self.data,
                "step": self.step, "source": self.source}
        return save_generator(folder, self.network, meta, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path, *, device: str = "auto", checkpoint: str = "last") -> DiffusionGenerator:
        """Load EMA weights from a run directory (``checkpoint`` ``last`` or ``best``) or a saved folder.

        Raises:
            SynthmedError: not a run or saved generator, a different generator kind, or no checkpoint yet.
        """
        path = Path(path)
        meta, weights, key = find_weights(path, cls.name, checkpoint)
        config = build_config(DiffusionModelConfig, f"{path}: bad model config", **meta["model"])
        gen = cls(config)
        net = build_unet(config)
        if key == "ema":
            ema = EMA(net)
            load_weights(ema, weights)
            net = ema.module
        else:
            load_weights(net, weights)
        gen.device = torch.device(resolve_device(device))
        gen.network = net.to(gen.device).eval()
        gen.data, gen.step, gen.source = dict(meta.get("data", {})), int(meta.get("step", 0)), str(path)
        return gen
