"""The GAN generators behind :class:`~synthmed.generators.base.Generator`: ``progan``,
``stylegan1``, ``stylegan2``, ``stylegan3`` (one class, four registered names)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch

from synthmed.config import build_config
from synthmed.data.encoding import JointEncoding
from synthmed.data.store import Store
from synthmed.errors import SynthmedError
from synthmed.generators.base import FitOptions, Generator
from synthmed.generators.common import (
    check_resume_store,
    find_weights,
    open_training_run,
    override,
    save_generator,
    store_data,
)
from synthmed.generators.gan.config import PRESETS, GANModelConfig, GANTrainConfig
from synthmed.generators.gan.task import GANTask, build_networks, generate
from synthmed.training.checkpoint import load_weights
from synthmed.training.data import batch_stream
from synthmed.training.ema import EMA
from synthmed.training.fabric import make_fabric, resolve_device
from synthmed.training.loop import LoopOptions, train
from synthmed.training.seeding import derive_seed, make_generator


class GANGenerator(Generator):
    """A GAN of jointly encoded image + mask samples; subclasses fix the family (:attr:`name`).

    Args:
        config: the networks; ``image_channels`` and ``resolution`` are replaced by the
            training store's on :meth:`fit`. Default: the preset's.
        train: training settings. Default: the preset's.
        preset: ``tiny``, ``small`` or ``paper`` (:data:`~synthmed.generators.gan.config.PRESETS`).
    """

    name: ClassVar[str] = "stylegan2"
    #: ``sample(…, truncation=psi)`` is supported.
    supports_truncation: ClassVar[bool] = True

    def __init__(self, config: GANModelConfig | None = None, train: GANTrainConfig | None = None, *,
                 preset: str = "tiny"):
        presets = PRESETS[self.name]
        if preset not in presets:
            raise SynthmedError(f"unknown preset {preset!r}; known: {', '.join(presets)}")
        self.config = config or presets[preset].model
        self.train_config = train or presets[preset].train
        self.network: torch.nn.Module | None = None
        self.device = torch.device("cpu")
        self.data: dict[str, Any] = {}
        self.step = 0
        self.source: str | None = None
        self.global_rank = 0

    @classmethod
    def from_options(cls, preset: str, model_overrides: Mapping[str, Any] = {},
                     train_overrides: Mapping[str, Any] = {}) -> GANGenerator:
        """The preset's config with the non-``None`` overrides (CLI options) applied."""
        presets = PRESETS[cls.name]
        if preset not in presets:
            raise SynthmedError(f"unknown preset {preset!r}; known: {', '.join(presets)}")
        config = override(GANModelConfig, presets[preset].model, model_overrides, f"{cls.name} model options")
        train = override(GANTrainConfig, presets[preset].train, train_overrides, f"{cls.name} training options")
        return cls(config, train, preset=preset)

    @property
    def encoding(self) -> JointEncoding:
        return JointEncoding(self.config.image_channels, self.config.label_mode)

    def config_for(self, store: Store) -> GANModelConfig:
        """The model config completed with ``store``'s channels and side.

        Raises:
            SynthmedError: a 3D store, a non-square image or a side that is not a power of two.
        """
        shape = tuple(store.sample_shape[1:])
        if store.dims != 2 or len(set(shape)) != 1:
            raise SynthmedError(f"{store.path}: the {self.name} generator needs square 2D slices; the store has "
                                f"{store.dims}D samples of shape {list(store.sample_shape)}")
        values = self.config.model_dump()
        values.update(image_channels=store.sample_shape[0], resolution=shape[0])
        return build_config(GANModelConfig, f"{store.path}: samples of shape {list(store.sample_shape)} do not fit "
                            f"the {self.name} generator", **values)

    def fit(self, store: Store, run_dir: str | Path, options: FitOptions) -> int:
        """Train on ``store``'s ``train`` split into ``run_dir`` (see :class:`Generator`)."""
        run_dir = Path(run_dir)
        data = store_data(store)
        config = self.config_for(store)
        if options.resume:
            check_resume_store(run_dir, store)
        fabric = make_fabric(options.fabric)
        run = open_training_run(run_dir, fabric, kind=self.name, model=config.model_dump(mode="json"),
                                training=self.train_config.model_dump(mode="json"), seed=options.seed, data=data,
                                resume=options.resume, overwrite=options.overwrite)
        seed = int(run.info["seed"])
        task = GANTask(config, self.train_config, seed)
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
        self.data, self.step, self.source = {**data, "growth_steps": tc.growth_steps}, final, str(run_dir)
        self.global_rank = fabric.global_rank
        return final

    # -- sampling

    def level(self) -> tuple[int, float]:
        """Growth ``(level, alpha)`` of the weights: the last trained one (ProGAN / StyleGAN 1 stopped
        before the full resolution sample at their level, up-sampled)."""
        from synthmed.generators.gan.networks_progan import growth

        phase = int(self.data.get("growth_steps", 0) or 0)
        if self.config.family not in ("progan", "stylegan1") or phase <= 0:
            return self.config.max_level, 1.0
        return growth(max(self.step - 1, 0), phase, self.config.max_level)

    def sample(self, n: int, seed: int, *, batch_size: int = 16, sampler: str | None = None, steps: int | None = None,
               on_step: Callable[[int, int], None] | None = None,
               truncation: float = 1.0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``n`` samples in batches of ``batch_size`` (see :class:`Generator`).

        Batch ``b`` draws its latents (and noise inputs) from a generator seeded by
        ``(seed, b)``: the same seed and batch size on the same device give the same samples.

        Args:
            truncation: ``psi`` in ``(0, 1]`` pulls styles towards the average ``w``
                (StyleGAN) or the first features towards their running mean (ProGAN):
                fidelity for diversity.
        """
        if self.network is None:
            raise SynthmedError("this generator has no weights: fit or load it first")
        if n < 1 or batch_size < 1:
            raise SynthmedError(f"--n and --batch must be >= 1, got {n} and {batch_size}")
        if not 0 < truncation <= 1:
            raise SynthmedError(f"--truncation must be in (0, 1], got {truncation}")
        self.resolve_sampler(sampler, steps)
        level, alpha = self.level()
        self.network.eval()
        for b, start in enumerate(range(0, n, batch_size)):
            m = min(batch_size, n - start)
            gen = make_generator(derive_seed(seed, b), self.device)
            z = torch.randn((m, self.config.z_dim), generator=gen, device=self.device)
            with torch.no_grad():
                x = generate(self.network, self.config, z, psi=truncation, level=level, alpha=alpha, noise=gen)
            if on_step:
                on_step(m, 1)
            yield self.encoding.decode(x.float().cpu())

    # -- persistence

    def save(self, folder: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``generator.json`` (name, model config, data, step) and ``model.safetensors`` (EMA generator)."""
        if self.network is None:
            raise SynthmedError("nothing to save: the generator has no weights")
        meta = {"generator": self.name, "model": self.config.model_dump(mode="json"), "data": self.data,
                "step": self.step, "source": self.source}
        return save_generator(folder, self.network, meta, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path, *, device: str = "auto", checkpoint: str = "last") -> GANGenerator:
        """Load the EMA generator of a run (``checkpoint`` ``last`` or ``best``) or a saved folder."""
        path = Path(path)
        meta, weights, key = find_weights(path, cls.name, checkpoint)
        config = build_config(GANModelConfig, f"{path}: bad model config", **meta["model"])
        gen = cls(config)
        net, _ = build_networks(config)
        if key == "ema":
            ema = EMA(net)
            load_weights(ema, weights)
            net = ema.module
        else:
            load_weights(net, weights)
        gen.device = torch.device(resolve_device(device))
        gen.network = net.to(gen.device).eval()
        data = dict(meta.get("data", {}))
        if key == "ema":
            data.setdefault("growth_steps", meta.get("training", {}).get("growth_steps", 0))
        gen.data, gen.step, gen.source = data, int(meta.get("step", 0)), str(path)
        return gen


class ProGAN(GANGenerator):
    """Progressive GAN (WGAN-GP + drift, pixel norm, minibatch std, progressive growing)."""

    name = "progan"


class StyleGAN1(GANGenerator):
    """StyleGAN 1 (mapping, AdaIN, noise, style mixing, progressive growing)."""

    name = "stylegan1"


class StyleGAN2(GANGenerator):
    """StyleGAN 2 (modulated convs, skip G, residual D, lazy R1 + path length, ADA)."""

    name = "stylegan2"


class StyleGAN3(GANGenerator):
    """StyleGAN 3, config T (Fourier input, alias-free filtered layers, ADA)."""

    name = "stylegan3"
