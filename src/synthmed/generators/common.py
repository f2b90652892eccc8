"""What every generator family shares around its networks: option overrides, the training
store's description, opening a run on every DDP rank, and finding/writing weights.

Families (:mod:`~synthmed.generators.diffusion`, :mod:`~synthmed.generators.gan`) call these
instead of re-implementing them; none of them knows about a particular network.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from lightning_fabric import Fabric
from pydantic import BaseModel

from synthmed.atomic import atomic_directory
from synthmed.config import build_config
from synthmed.data.store import Store
from synthmed.errors import SynthmedError
from synthmed.generators.base import GENERATOR_JSON, WEIGHTS
from synthmed.training.checkpoint import latest_checkpoint, read_state, save_weights
from synthmed.training.run import RUN_JSON, Run, open_run, read_run

ModelT = TypeVar("ModelT", bound=BaseModel)


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
    """What a run records about its training store (and what sampling needs to write stores).

    Raises:
        DataError: the store has no ``train`` split.
    """
    return {"store": str(store.path), "dims": store.dims, "sample_shape": list(store.sample_shape),
            "channels": list(store.channels), "spacing": list(store.spacing),
            "normalisation": store.meta.get("normalisation", {}), "n_train": int(len(store.indices("train")))}


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
