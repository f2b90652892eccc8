"""What every generator family shares around its networks: option overrides, the training
store's description, opening a run on every DDP rank, finding/writing weights, and
:class:`TaskGenerator`, the ``__init__``/``from_options``/``fit``/``save``/``load`` of a
generator trained by a :class:`~synthmed.training.loop.TrainingTask`.

Families (:mod:`~synthmed.generators.diffusion`, :mod:`~synthmed.generators.gan`) call these
instead of re-implementing them; none of them knows about a particular network.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

import torch
from lightning_fabric import Fabric
from pydantic import BaseModel

from synthmed.atomic import atomic_directory
from synthmed.config import build_config
from synthmed.data.encoding import LEGACY_LABEL_MODE, JointEncoding
from synthmed.data.store import Store
from synthmed.errors import SynthmedError
from synthmed.generators.base import GENERATOR_JSON, WEIGHTS, FitOptions, Generator
from synthmed.training.checkpoint import latest_checkpoint, load_latest, load_weights, read_state, save_weights
from synthmed.training.data import batch_stream
from synthmed.training.ema import EMA
from synthmed.training.fabric import make_fabric, resolve_device
from synthmed.training.loop import LoopOptions, TrainingTask, train
from synthmed.training.run import RUN_JSON, Run, open_run, read_run

ModelT = TypeVar("ModelT", bound=BaseModel)
#: A family's model config (:class:`~synthmed.generators.config.DiffusionModelConfig`, …).
ConfigT = TypeVar("ConfigT", bound=BaseModel)
#: A family's training config (:class:`~synthmed.generators.config.TrainConfig`, …).
TrainT = TypeVar("TrainT", bound=BaseModel)


def override(model: type[ModelT], base: BaseModel, overrides: Mapping[str, Any], source: str) -> ModelT:
    """``base``'s values with the non-``None`` ``overrides`` applied, validated as ``model``.

    Raises:
        SynthmedError: ``"{source}: field: what was expected (got …)"`` for each bad value
            (an option the family does not have is an error naming it).
    """
    values = base.model_dump()
    values.update({k: v for k, v in overrides.items() if v is not None})
    return build_config(model, source, **values)  # type: ignore[arg-type]


def store_data(store: Store) -> dict[str, Any]:
    """What a run records about its training store (and what sampling needs to write stores):
    its absolute path and content hash (``store``, ``store_hash``: what a sampled store's
    provenance calls ``trained_on`` / ``trained_on_hash``, which the export gate checks), shape,
    channels, spacing and normalisation.

    Raises:
        DataError: the store has no ``train`` split.
    """
    from synthmed.data.fingerprint import store_hash

    n_train = int(len(store.indices("train")))
    return {"store": str(Path(store.path).resolve()), "store_hash": store_hash(store.path), "dims": store.dims, "sample_shape": list(store.sample_shape),
            "channels": list(store.channels), "spacing": list(store.spacing),
            "normalisation": store.meta.get("normalisation", {}), "n_train": n_train}


def check_resume_store(run_dir: Path, store: Store) -> None:
    """On ``--resume``: the store must have the dims and sample shape the run was trained on.

    Raises:
        SynthmedError: naming both shapes.
    """
    if not (run_dir / RUN_JSON).is_file():
        return
    saved = read_run(run_dir).get("data", {})
    if saved.get("dims") not in (None, store.dims) or saved.get("sample_shape") not in (None, list(store.sample_shape)):
        raise SynthmedError(f"{run_dir}: --resume on a different store: the run was trained on {saved.get('dims')}D "
                            f"samples of shape {saved.get('sample_shape')}, {store.path} has {store.dims}D "
                            f"samples of shape {list(store.sample_shape)}")


def open_training_run(run_dir: Path, fabric: Fabric, **spec: Any) -> Run:
    """:func:`~synthmed.training.run.open_run` on every rank: all ranks check, rank 0 writes,
    the others read what it wrote. ``spec``: ``kind, model, training, seed, data, resume, overwrite``."""
    run = open_run(run_dir, **spec, write=False)  # every rank checks before anything is written
    fabric.barrier()
    if fabric.is_global_zero:
        run = open_run(run_dir, **spec, write=True)
    fabric.barrier()
    if not fabric.is_global_zero:
        run = Run(run_dir, read_run(run_dir), resumed=run.resumed)
    return run


def find_weights(path: str | Path, kind: str, checkpoint: str = "last") -> tuple[dict[str, Any], Path, str | None]:
    """Where the sampling weights of a run directory or saved folder are.

    Returns:
        ``(meta, weights_file, key)``: ``meta`` has ``model``, ``data`` and ``step``; ``key``
        is ``"ema"`` for a run checkpoint (``ema.safetensors`` holds an :class:`~synthmed.training.EMA`)
        and ``None`` for a saved folder (plain network weights).

    Raises:
        SynthmedError: not a run or saved generator, a generator of another kind, or no checkpoint yet.
    """
    path = Path(path)
    if (path / GENERATOR_JSON).is_file():
        meta = json.loads((path / GENERATOR_JSON).read_text())
        found, weights, key = meta.get("generator"), path / WEIGHTS, None
    elif (path / RUN_JSON).is_file():
        meta = read_run(path)
        found = meta.get("kind")
        state = read_state(path) or {}
        if checkpoint == "best":
            if "best" not in state:
                raise SynthmedError(f"{path}: no best checkpoint")
            folder, meta["step"] = path / state["best"]["checkpoint"], state["best"]["step"]
        else:
            latest = latest_checkpoint(path)
            if latest is None:
                raise SynthmedError(f"{path}: the run has no checkpoint yet (train it, or wait for the "
                                    "first --checkpoint-every)")
            meta["step"], folder = latest
        weights, key = folder / "ema.safetensors", "ema"
    else:
        raise SynthmedError(f"{path}: not a generator run directory ({RUN_JSON} missing) or saved generator "
                            f"({GENERATOR_JSON} missing)")
    if found != kind:
        raise SynthmedError(f"{path}: a {found!r} generator, not {kind!r}")
    return meta, weights, key


def save_generator(folder: str | Path, network: torch.nn.Module, meta: Mapping[str, Any], *,
                   overwrite: bool = False) -> Path:
    """Write ``generator.json`` (``meta``) and ``model.safetensors`` (``network``) atomically."""
    folder = Path(folder)
    with atomic_directory(folder, overwrite=overwrite) as tmp:
        (tmp / GENERATOR_JSON).write_text(json.dumps(dict(meta), indent=2) + "\n")
        save_weights(network, tmp / WEIGHTS, {"step": str(meta.get("step", 0))})
    return folder


def train_on_store(task: TrainingTask, fabric: Fabric, run: Run, store: Store, config: Any, *, progress: bool,
                   description: str) -> int:
    """Run ``task`` through :func:`~synthmed.training.loop.train` on ``store``'s ``train`` split,
    in the :func:`~synthmed.training.data.batch_stream` order of the run's seed.

    Args:
        config: the stage's :class:`~synthmed.config.LoopConfig` (``steps``, ``batch``,
            ``checkpoint_every``, ``log_every``, ``num_workers``; ``image_every`` if it has one).
        progress: show the progress bar (on rank 0).
        description: the progress bar's label.

    Returns:
        The final step.
    """
    seed = int(run.info["seed"])
    dataset = store.dataset(split="train")

    def batches(start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return batch_stream(dataset, config.batch, seed=seed, start_step=start, rank=fabric.global_rank,
                            world_size=fabric.world_size, num_workers=config.num_workers,
                            pin_memory=fabric.device.type == "cuda")

    loop = LoopOptions(steps=config.steps, checkpoint_every=config.checkpoint_every, log_every=config.log_every,
                       image_every=getattr(config, "image_every", 0), progress=progress and fabric.is_global_zero,
                       description=description)
    return train(task, fabric, run, batches, loop)


class EMATask(TrainingTask, Protocol):
    """A :class:`~synthmed.training.loop.TrainingTask` whose sampling weights are ``ema``
    (an :class:`~synthmed.training.EMA` of the network, set up by ``setup``)."""

    ema: EMA


class TaskGenerator(Generator, Generic[ConfigT, TrainT]):
    """A :class:`~synthmed.generators.base.Generator` trained by a :class:`EMATask`: ``fit``,
    ``from_options``, ``save`` and ``load`` once for every family.

    A family sets :attr:`model_config`, :attr:`train_config_model`, :attr:`options_source` and
    implements :meth:`presets`, :meth:`config_for`, :meth:`make_task` and :meth:`build_network`
    (and, if it records more than :func:`store_data`, :meth:`trained_data` / :meth:`loaded_data`).

    Args:
        config: the model; the store-given fields are replaced by the training store's on
            :meth:`fit` (:meth:`config_for`). Default: the preset's.
        train: training settings. Default: the preset's.
        preset: a name in :meth:`presets`.
    """

    #: The family's model config class (validates ``generator.json``'s ``model``).
    model_config: ClassVar[type[BaseModel]]
    #: The family's training config class.
    train_config_model: ClassVar[type[BaseModel]]
    #: The ``source`` of :func:`override`'s errors; ``{name}`` is the generator's name,
    #: ``{what}`` ``model`` or ``training``.
    options_source: ClassVar[str] = "{what} options"

    def __init__(self, config: ConfigT | None = None, train: TrainT | None = None, *, preset: str = "tiny"):
        presets = self.check_preset(preset)
        self.config: ConfigT = config or presets[preset].model
        self.train_config: TrainT = train or presets[preset].train
        self.network: torch.nn.Module | None = None
        self.device = torch.device("cpu")
        self.data: dict[str, Any] = {}
        self.step = 0
        self.source: str | None = None
        self.global_rank = 0  # set by fit (DDP rank)

    # -- family hooks

    @classmethod
    @abstractmethod
    def presets(cls) -> Mapping[str, Any]:
        """The family's presets by name (each with ``model`` and ``train`` configs)."""

    @abstractmethod
    def config_for(self, store: Store) -> ConfigT:
        """The model config completed with ``store``'s dims, channels and shape.

        Raises:
            SynthmedError: the store's samples do not fit the network.
        """

    @abstractmethod
    def make_task(self, config: ConfigT, seed: int) -> EMATask:
        """The training task of ``config`` and :attr:`train_config`, seeded by the run's ``seed``."""

    @classmethod
    @abstractmethod
    def build_network(cls, config: ConfigT) -> torch.nn.Module:
        """The (untrained) sampling network of ``config``: what ``model.safetensors`` and the
        ``ema`` of a checkpoint hold."""

    def trained_data(self, data: dict[str, Any]) -> dict[str, Any]:
        """:attr:`data` after :meth:`fit` from the store's :func:`store_data` (default: unchanged)."""
        return data

    @classmethod
    def saved_config(cls, model: Mapping[str, Any], path: Path) -> ConfigT:
        """The model config a run or saved folder at ``path`` recorded (``model``); one that names
        no ``label_mode`` is of the legacy encoding (``"levels"``, runs from before ``"nested"``).

        Raises:
            SynthmedError: ``"{path}: bad model config: …"``.
        """
        saved = {"label_mode": LEGACY_LABEL_MODE, **model}
        return build_config(cls.model_config, f"{path}: bad model config", **saved)  # type: ignore[return-value]

    @classmethod
    def loaded_data(cls, meta: Mapping[str, Any], key: str | None) -> dict[str, Any]:
        """:attr:`data` after :meth:`load` from :func:`find_weights`' ``meta`` and ``key``
        (default: ``meta``'s ``data``)."""
        return dict(meta.get("data", {}))

    # -- shared

    @classmethod
    def check_preset(cls, preset: str) -> Mapping[str, Any]:
        """:meth:`presets`, checking that ``preset`` is one of them.

        Raises:
            SynthmedError: ``unknown preset …; known: …``.
        """
        presets = cls.presets()
        if preset not in presets:
            raise SynthmedError(f"unknown preset {preset!r}; known: {', '.join(presets)}")
        return presets

    @classmethod
    def from_options(cls, preset: str, model_overrides: Mapping[str, Any] = {},
                     train_overrides: Mapping[str, Any] = {}) -> Self:
        """The preset's config with the non-``None`` overrides (CLI options) applied."""
        presets = cls.check_preset(preset)
        config = override(cls.model_config, presets[preset].model, model_overrides,
                          cls.options_source.format(name=cls.name, what="model"))
        train = override(cls.train_config_model, presets[preset].train, train_overrides,
                         cls.options_source.format(name=cls.name, what="training"))
        return cls(config, train, preset=preset)  # type: ignore[arg-type]

    @property
    def encoding(self) -> JointEncoding:
        """The joint encoding the network was trained on (its config's ``label_mode``)."""
        return JointEncoding(self.config.image_channels, self.config.label_mode)  # type: ignore[attr-defined]

    def describe(self) -> dict[str, Any]:
        """:meth:`Generator.describe` plus the ``label_mode`` of the joint encoding."""
        return {**super().describe(), "label_mode": self.encoding.label_mode}

    def fit_options(self, run_dir: Path, store: Store, options: FitOptions) -> FitOptions:
        """The options :meth:`fit` trains with, after its checks of ``run_dir`` (a family may add
        its own checks and settings): on ``resume``, the store must be the run's."""
        if options.resume:
            check_resume_store(run_dir, store)
        return options

    def training_record(self, options: FitOptions) -> dict[str, Any]:
        """The ``training`` section :meth:`fit` writes to ``run.json``: :attr:`train_config`."""
        return self.train_config.model_dump(mode="json")

    def before_task(self, store: Store, run_dir: Path, config: ConfigT, seed: int, fabric: Any,
                    options: FitOptions) -> Any:
        """Run before :meth:`make_task` inside the open run (a family's earlier stage), returning
        the loop config of the training task (default: :attr:`train_config`)."""
        return self.train_config

    def fit(self, store: Store, run_dir: str | Path, options: FitOptions) -> int:
        """Train on ``store``'s ``train`` split into ``run_dir`` (see :class:`Generator`), through
        the hooks :meth:`fit_options`, :meth:`training_record` and :meth:`before_task`.

        Raises:
            DataError: the store has no ``train`` samples.
            SynthmedError / OutputExistsError: see :func:`~synthmed.training.run.open_run`.
        """
        run_dir = Path(run_dir)
        data = store_data(store)  # DataError if there is no train split
        config = self.config_for(store)
        options = self.fit_options(run_dir, store, options)
        fabric = make_fabric(options.fabric)
        run = open_training_run(run_dir, fabric, kind=self.name, model=config.model_dump(mode="json"),
                                training=self.training_record(options), seed=options.seed, data=data,
                                resume=options.resume, overwrite=options.overwrite)
        seed = int(run.info["seed"])
        try:
            loop = self.before_task(store, run_dir, config, seed, fabric, options)
            task = self.make_task(config, seed)
        except BaseException:
            run.close()
            raise
        final = train_on_store(task, fabric, run, store, loop, progress=options.progress,
                               description=f"{self.name} {run_dir.name}")
        self.config, self.network, self.device = config, task.ema.module.eval(), fabric.device
        self.data, self.step, self.source = self.trained_data(data), final, str(run_dir)
        self.global_rank = fabric.global_rank
        return final

    def sampling_network(self, n: int, batch_size: int) -> torch.nn.Module:
        """The network ``sample`` runs, after checking it exists and ``n``/``batch_size``.

        Raises:
            SynthmedError: no weights yet, or ``n``/``batch_size`` below 1.
        """
        if self.network is None:
            raise SynthmedError("this generator has no weights: fit or load it first")
        if n < 1 or batch_size < 1:
            raise SynthmedError(f"--n and --batch must be >= 1, got {n} and {batch_size}")
        return self.network

    # -- persistence

    def save(self, folder: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``generator.json`` (name, model config, data, step) and ``model.safetensors`` (EMA weights)."""
        if self.network is None:
            raise SynthmedError("nothing to save: the generator has no weights")
        meta = {"generator": self.name, "model": self.config.model_dump(mode="json"), "data": self.data,
                "step": self.step, "source": self.source}
        return save_generator(folder, self.network, meta, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path, *, device: str = "auto", checkpoint: str = "last") -> Self:
        """Load EMA weights from a run directory (``checkpoint`` ``last`` or ``best``) or a saved folder.

        The joint encoding is the saved config's ``label_mode``: ``"levels"`` (the legacy
        order) for runs trained before ``"nested"`` became the default, which recorded it,
        and for a config that names no ``label_mode`` at all.

        Raises:
            SynthmedError: not a run or saved generator, a different generator kind, or no checkpoint yet.
        """
        path = Path(path)
        meta, weights, key = find_weights(path, cls.name, checkpoint)
        config = cls.saved_config(meta["model"], path)
        gen = cls(config)  # type: ignore[arg-type]

        def read(file: Path) -> torch.nn.Module:
            net = cls.build_network(config)  # type: ignore[arg-type]
            if key == "ema":
                ema = EMA(net)
                load_weights(ema, file)
                return ema.module
            load_weights(net, file)
            return net

        if key == "ema" and checkpoint != "best":  # damaged last checkpoint: the previous kept one, with a warning
            found = load_latest(path, lambda folder: read(folder / weights.name))
            assert found is not None  # find_weights raised if there is no checkpoint
            meta["step"], net = found[0], found[2]
        else:
            net = read(weights)
        gen.device = torch.device(resolve_device(device))
        gen.network = net.to(gen.device).eval()
        gen.data, gen.step, gen.source = cls.loaded_data(meta, key), int(meta.get("step", 0)), str(path)
        return gen
