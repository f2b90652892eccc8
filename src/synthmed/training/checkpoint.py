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

**Damaged files.** A truncated or corrupt ``.safetensors`` or ``state.pt`` raises
:class:`CorruptCheckpointError` naming the file; :func:`load_latest` then falls back to the
previous kept checkpoint with a warning (on stderr). A ``state.pt`` that holds anything but
tensors and plain data is refused as untrusted (:class:`UntrustedFileError`) and never
unpickled, with no fallback: a tampered run is not silently resumed.
"""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load_file, save_file

from synthmed.atomic import atomic_directory, atomic_file
from synthmed.errors import SynthmedError
from synthmed.training.fabric import unwrap

T = TypeVar("T")


class CorruptCheckpointError(SynthmedError):
    """A checkpoint file that cannot be read: truncated, corrupt or missing."""


class UntrustedFileError(SynthmedError):
    """A ``torch.load`` file holding objects other than tensors and plain data: refused, never unpickled."""


def torch_load_safely(path: str | Path, *, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with its failures as one-line synthmed errors.

    Raises:
        UntrustedFileError: the file holds other objects (torch's message, which suggests
            ``weights_only=False``, is never shown: that would run the file's code).
        CorruptCheckpointError: the file is missing, truncated or not a torch file.
    """
    path = Path(path)
    if not path.is_file():
        raise CorruptCheckpointError(f"{path}: file missing")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():
            raise UntrustedFileError(f"{path}: refused: the file holds objects other than tensors and plain data, "
                                     "so it is untrusted (not a synthmed checkpoint, or tampered with); it was not "
                                     "unpickled") from None
        raise CorruptCheckpointError(f"{path}: corrupt or truncated ({_first_line(exc)})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CorruptCheckpointError(f"{path}: corrupt or truncated ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]


STATE_JSON = "state.json"
STATE_PT = "state.pt"
CHECKPOINTS = "checkpoints"


def module_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of ``module`` (unwrapped) as contiguous CPU tensors, ready for safetensors."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in unwrap(module).state_dict().items()}


def save_weights(module: torch.nn.Module, path: str | Path, metadata: Mapping[str, str] | None = None) -> None:
    """Write ``module``'s weights to ``path`` (safetensors)."""
    save_file(module_tensors(module), str(path), metadata=dict(metadata or {}))


def load_weights(module: torch.nn.Module, path: str | Path, *, exclude: Callable[[str], bool] | None = None) -> None:
    """Load safetensors weights into ``module`` (unwrapped), strictly.

    ``exclude``: keys it selects (in the module and in the file) are neither loaded nor required
    (the module keeps its own values for them); every other key must be in both, with equal
    shapes. E.g. a network's body from a run whose head had another number of outputs.

    Raises:
        CorruptCheckpointError: a missing, truncated or corrupt file (naming it).
        SynthmedError: keys/shapes that do not match the module.
    """
    path = Path(path)
    if not path.is_file():
        raise CorruptCheckpointError(f"{path}: weights file missing")
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own SafetensorError, OSError, …
        raise CorruptCheckpointError(f"{path}: corrupt or truncated weights file ({_first_line(exc)})") from None
    target = unwrap(module)
    try:
        if exclude is None:
            target.load_state_dict(tensors)
            return
        kept = {k: v for k, v in tensors.items() if not exclude(k)}
        result = target.load_state_dict(kept, strict=False)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise SynthmedError(f"{path}: weights do not fit the model ({first})") from None
    missing = [k for k in result.missing_keys if not exclude(k)]
    if missing or result.unexpected_keys:
        what = f"missing {missing[:3]}" if missing else f"unexpected {list(result.unexpected_keys)[:3]}"
        raise SynthmedError(f"{path}: weights do not fit the model ({what})")


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


def kept_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every kept ``step_*`` checkpoint, the one ``state.json`` points at
    first, then the others from the newest down."""
    run_dir = Path(run_dir)
    state = read_state(run_dir) or {}
    found: list[tuple[int, Path]] = []
    pointed = run_dir / state["checkpoint"] if "checkpoint" in state else None
    if pointed is not None and pointed.is_dir():
        found.append((int(state["step"]), pointed))
    for folder in sorted((run_dir / CHECKPOINTS).glob("step_*"), reverse=True):
        if folder.is_dir() and folder != pointed and folder.name[5:].isdigit():
            found.append((int(folder.name[5:]), folder))
    return found


def load_latest(run_dir: str | Path, load: Callable[[Path], T]) -> tuple[int, Path, T] | None:
    """``load(folder)`` of the latest kept checkpoint; when it raises :class:`CorruptCheckpointError`,
    a warning names the file and the previous kept checkpoint is tried, and so on.

    Returns:
        ``(step, folder, load's result)``, or ``None`` when the run has no checkpoint.

    Raises:
        CorruptCheckpointError: every kept checkpoint is damaged (naming the last file tried).
        UntrustedFileError: from ``load`` (no fallback).
    """
    from rich.markup import escape

    from synthmed.progress import console

    kept = kept_checkpoints(run_dir)
    if not kept:
        latest_checkpoint(run_dir)  # raises if state.json points at a missing folder
        return None
    error: CorruptCheckpointError | None = None
    for i, (step, folder) in enumerate(kept):
        try:
            return step, folder, load(folder)
        except CorruptCheckpointError as exc:
            error = exc
            if i + 1 < len(kept):
                console.print(f"[yellow]warning:[/] {escape(str(exc))}; using the previous kept checkpoint "
                              f"{kept[i + 1][1].name} (step {kept[i + 1][0]}) instead", soft_wrap=True, highlight=False)
    assert error is not None
    raise CorruptCheckpointError(f"{error}; no other kept checkpoint of {run_dir} is readable") from None


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

    Raises:
        CorruptCheckpointError: a damaged file (named); UntrustedFileError: a ``state.pt``
            holding other objects.
    """
    folder = Path(folder)
    for key, module in modules.items():
        load_weights(module, folder / f"{key}.safetensors")
    payload = torch_load_safely(folder / STATE_PT, map_location=map_location)
    for key, opt in optimizers.items():
        if key not in payload["optimizers"]:
            raise SynthmedError(f"{folder}: no optimizer state {key!r} in {STATE_PT}")
        opt.load_state_dict(payload["optimizers"][key])
    return payload
