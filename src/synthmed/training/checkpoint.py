"""Checkpoints: safetensors weights, a ``weights_only``-loadable state file, ``state.json``.

Layout of a run directory's checkpoints::

    RUN/
      state.json                       {"step": N, "checkpoint": "checkpoints/step_00000N", "best": ...}
      checkpoints/step_00000N/
        <module>.safetensors           one per module (e.g. model, ema, generator, discriminator)
        state.pt                       {"step", "optimizers": {name: state_dict}, "rng", "extra"}
      checkpoints/best/                same layout (only with a monitored validation metric)

A checkpoint folder is written under a temporary name and renamed into place, then
``state.json`` is replaced atomically, so a killed run always leaves the previous complete
checkpoint. ``state.pt`` holds only tensors, numbers, strings, lists and dicts, so
``torch.load(path, weights_only=True)`` reads it; weights never go through pickle.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from synthmed.atomic import atomic_directory, atomic_file
from synthmed.errors import SynthmedError

STATE_JSON = "state.json"
STATE_PT = "state.pt"
CHECKPOINTS = "checkpoints"


def _unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The user module under Fabric / DDP / DataParallel wrappers."""
    from lightning_fabric.wrappers import _FabricModule

    wrappers = (_FabricModule, torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    while isinstance(module, wrappers):
        module = module.module
    return module


def module_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of ``module`` (unwrapped) as contiguous CPU tensors, ready for safetensors."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in _unwrap(module).state_dict().items()}


def save_weights(module: torch.nn.Module, path: str | Path, metadata: Mapping[str, str] | None = None) -> None:
    """Write ``module``'s weights to ``path`` (safetensors)."""
    save_file(module_tensors(module), str(path), metadata=dict(metadata or {}))


def load_weights(module: torch.nn.Module, path: str | Path) -> None:
    """Load safetensors weights into ``module`` (unwrapped), strictly.

    Raises:
        SynthmedError: missing file or keys/shapes that do not match the module.
    """
    path = Path(path)
    if not path.is_file():
        raise SynthmedError(f"{path}: weights file missing")
    try:
        _unwrap(module).load_state_dict(load_file(str(path)))
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise SynthmedError(f"{path}: weights do not fit the model ({first})") from None


def read_state(run_dir: str | Path) -> dict[str, Any] | None:
    """``state.json`` of ``run_dir``, or ``None`` if there is no checkpoint yet."""
    file = Path(run_dir) / STATE_JSON
    if not file.is_file():
        return None
    return json.loads(file.read_text())


def write_state(run_dir: str | Path, state: Mapping[str, Any]) -> None:
    """Atomically replace ``state.json``."""
    with atomic_file(Path(run_dir) / STATE_JSON) as tmp:
        tmp.write_text(json.dumps(dict(state), indent=2) + "\n")


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}"


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    modules: Mapping[str, torch.nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer],
    *,
    rng: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    name: str | None = None,
    keep: int = 2,
    state_fields: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint and point ``state.json`` at it.

    Args:
        run_dir: the run directory.
        step: steps completed.
        modules: name → module; each becomes ``<name>.safetensors``.
        optimizers: name → optimizer; their state dicts go to ``state.pt``.
        rng: RNG states (tensors) for ``state.pt``.
        extra: more ``weights_only``-loadable state (tensors, numbers, strings, lists, dicts).
        name: folder name under ``checkpoints/`` (default ``step_%08d``); ``best`` does not
            move ``state.json``'s ``checkpoint`` pointer.
        keep: ``step_*`` checkpoints to keep (older ones are deleted); ``best`` is kept.
        state_fields: extra keys merged into ``state.json``.

    Returns:
        The checkpoint folder.
    """
    run_dir = Path(run_dir)
    name = name or checkpoint_name(step)
    folder = run_dir / CHECKPOINTS / name
    with atomic_directory(folder, overwrite=True) as tmp:
        for key, module in modules.items():
            save_weights(module, tmp / f"{key}.safetensors", {"step": str(step)})
        payload = {
            "step": int(step),
            "optimizers": {k: opt.state_dict() for k, opt in optimizers.items()},
            "rng": dict(rng or {}),
            "extra": dict(extra or {}),
        }
        torch.save(payload, tmp / STATE_PT)
    state = read_state(run_dir) or {}
    if name == "best":
        state["best"] = {"step": int(step), "checkpoint": f"{CHECKPOINTS}/best", **dict(state_fields or {})}
    else:
        state.update({"step": int(step), "checkpoint": f"{CHECKPOINTS}/{name}", **dict(state_fields or {})})
    write_state(run_dir, state)
    if name != "best":
        _prune(run_dir / CHECKPOINTS, keep)
    return folder


def _prune(folder: Path, keep: int) -> None:
    steps = sorted(p for p in folder.glob("step_*") if p.is_dir())
    for old in steps[: max(0, len(steps) - max(1, keep))]:
        shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(run_dir: str | Path) -> tuple[int, Path] | None:
    """``(step, folder)`` of the checkpoint ``state.json`` points at, or ``None``."""
    state = read_state(run_dir)
    if not state or "checkpoint" not in state:
        return None
    folder = Path(run_dir) / state["checkpoint"]
    if not folder.is_dir():
        raise SynthmedError(f"{run_dir}: state.json points at {state['checkpoint']}, which is missing")
    return int(state["step"]), folder


def load_checkpoint(
    folder: str | Path,
    modules: Mapping[str, torch.nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer] = {},
    *,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Load weights into ``modules`` and state into ``optimizers`` from a checkpoint folder.

    Returns:
        The ``state.pt`` payload (``step``, ``rng``, ``extra``), read with ``weights_only=True``.
    """
    folder = Path(folder)
    for key, module in modules.items():
        load_weights(module, folder / f"{key}.safetensors")
    payload = torch.load(folder / STATE_PT, map_location=map_location, weights_only=True)
    for key, opt in optimizers.items():
        if key not in payload["optimizers"]:
            raise SynthmedError(f"{folder}: no optimizer state {key!r} in {STATE_PT}")
        opt.load_state_dict(payload["optimizers"][key])
    return payload
