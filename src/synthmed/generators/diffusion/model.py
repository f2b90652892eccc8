"""``DiffusionGenerator``: the ``ddpm`` generator (DDPM or rectified flow) behind :class:`Generator`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from synthmed.atomic import atomic_directory
from synthmed.data.encoding import JointEncoding
from synthmed.data.store import Store
from synthmed.errors import SynthmedError
from synthmed.generators.base import GENERATOR_JSON, WEIGHTS, FitOptions, Generator
from synthmed.generators.config import PRESETS, DiffusionModelConfig, TrainConfig
from synthmed.generators.diffusion.networks import build_unet
from synthmed.generators.diffusion.samplers import check_sampler, default_sampler, default_steps, sample_encoded
from synthmed.generators.diffusion.task import DiffusionTask
from synthmed.training.checkpoint import latest_checkpoint, load_weights, read_state, save_weights
from synthmed.training.data import batch_stream
from synthmed.training.ema import EMA
from synthmed.training.fabric import make_fabric, resolve_device
from synthmed.training.loop import LoopOptions, train
from synthmed.training.run import RUN_JSON, Run, open_run, read_run
from synthmed.training.seeding import derive_seed, make_generator


def _errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())


def _override(model: type, base: Any, overrides: Mapping[str, Any], what: str) -> Any:
    values = base.model_dump()
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return model(**values)
    except ValidationError as exc:
        raise SynthmedError(f"{what}: {_errors(exc)}") from None


def store_data(store: Store) -> dict[str, Any]:
    """What a run records about its training store (and what sampling needs to write stores)."""
    return {"store": str(store.path), "dims": store.dims, "sample_shape": list(store.sample_shape),
            "channels": list(store.channels), "spacing": list(store.spacing),
            "normalisation": store.meta.get("normalisation", {}), "n_train": int(len(store.indices("train")))}


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
        config = _override(DiffusionModelConfig, PRESETS[preset].model, model_overrides, "model options")
        train = _override(TrainConfig, PRESETS[preset].train, train_overrides, "training options")
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
        try:
            return DiffusionModelConfig(**values)
        except ValidationError as exc:
            raise SynthmedError(f"{store.path}: {store.dims}D samples of shape {store.sample_shape} "
                                f"do not fit the model: {_errors(exc)}") from None

    def fit(self, store: Store, run_dir: str | Path, options: FitOptions) -> int:
        """Train on ``store``'s ``train`` split into ``run_dir`` (see :class:`Generator`).

        Raises:
            DataError: the store has no ``train`` samples.
            SynthmedError / OutputExistsError: see :func:`~synthmed.training.run.open_run`.
        """
        run_dir = Path(run_dir)
        data = store_data(store)  # DataError if there is no train split
        config = self.config_for(store)
        if options.resume and (run_dir / RUN_JSON).is_file():
            saved = read_run(run_dir).get("data", {})
            if saved.get("dims") not in (None, store.dims) or saved.get("sample_shape") not in (None, list(store.sample_shape)):
                raise SynthmedError(f"{run_dir}: --resume on a different store: the run was trained on {saved.get('dims')}D "
                                    f"samples of shape {saved.get('sample_shape')}, {store.path} has {store.dims}D "
                                    f"samples of shape {list(store.sample_shape)}")
        fabric = make_fabric(options.fabric)
        spec = dict(kind=self.name, model=config.model_dump(mode="json"), training=self.train_config.model_dump(mode="json"),
                    seed=options.seed, data=data, resume=options.resume, overwrite=options.overwrite)
        run = open_run(run_dir, **spec, write=False)  # every rank checks before anything is written
        fabric.barrier()
        if fabric.is_global_zero:
            run = open_run(run_dir, **spec, write=True)
        fabric.barrier()
        if not fabric.is_global_zero:
            run = Run(run_dir, read_run(run_dir), resumed=run.resumed)
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
        folder = Path(folder)
        with atomic_directory(folder, overwrite=overwrite) as tmp:
            meta = {"generator": self.name, "model": self.config.model_dump(mode="json"), "data": self.data,
                    "step": self.step, "source": self.source}
            (tmp / GENERATOR_JSON).write_text(json.dumps(meta, indent=2) + "\n")
            save_weights(self.network, tmp / WEIGHTS, {"step": str(self.step)})
        return folder

    @classmethod
    def load(cls, path: str | Path, *, device: str = "auto", checkpoint: str = "last") -> DiffusionGenerator:
        """Load EMA weights from a run directory (``checkpoint`` ``last`` or ``best``) or a saved folder.

        Raises:
            SynthmedError: not a run or saved generator, a different generator kind, or no checkpoint yet.
        """
        path = Path(path)
        if (path / GENERATOR_JSON).is_file():
            meta = json.loads((path / GENERATOR_JSON).read_text())
            kind, weights, key = meta.get("generator"), path / WEIGHTS, None
        elif (path / RUN_JSON).is_file():
            meta = read_run(path)
            kind = meta.get("kind")
            state = read_state(path) or {}
            if checkpoint == "best":
                if "best" not in state:
                    raise SynthmedError(f"{path}: no best checkpoint")
                folder, meta["step"] = path / state["best"]["checkpoint"], state["best"]["step"]
            else:
                found = latest_checkpoint(path)
                if found is None:
                    raise SynthmedError(f"{path}: the run has no checkpoint yet (train it, or wait for the "
                                        "first --checkpoint-every)")
                meta["step"], folder = found
            weights, key = folder / "ema.safetensors", "ema"
        else:
            raise SynthmedError(f"{path}: not a generator run directory ({RUN_JSON} missing) or saved generator "
                                f"({GENERATOR_JSON} missing)")
        if kind != cls.name:
            raise SynthmedError(f"{path}: a {kind!r} generator, not {cls.name!r}")
        try:
            config = DiffusionModelConfig(**meta["model"])
        except ValidationError as exc:
            raise SynthmedError(f"{path}: bad model config: {_errors(exc)}") from None
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
