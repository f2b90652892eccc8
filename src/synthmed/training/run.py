"""The run directory: resolved config, seed and versions; start, resume or overwrite.

A run directory holds::

    RUN/
      run.json          {"kind", "model": {...}, "training": {...}, "data": {...}, "seed", "versions"}
      state.json        {"step": N, "checkpoint": ...} (see synthmed.training.checkpoint)
      checkpoints/      step_*/ (and best/)
      tensorboard/      event files: scalars and sample grids

``run.json``'s ``model`` part is what a checkpoint's weights depend on: ``--resume`` refuses
to continue with a different one. The ``training`` part (steps, lr, …) may change on resume.

One writer at a time: the process that writes (rank 0) holds ``RUN/.lock``
(:class:`~synthmed.locks.FolderLock`) from :func:`open_run` until :meth:`Run.close` (which
:func:`~synthmed.training.loop.train` calls when it ends), so a second ``--resume`` or
``--overwrite`` of a run in progress is refused; a lock left by a killed process is taken
over. Opening a run also removes the temporaries a killed writer left in it.
"""

from __future__ import annotations

import json
import platform
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthmed.atomic import atomic_file, is_empty_dir, remove_stale
from synthmed.errors import OutputExistsError, SynthmedError
from synthmed.locks import LOCK_FILE, FolderLock

RUN_JSON = "run.json"
#: = :data:`synthmed.training.checkpoint.CHECKPOINTS` (not imported: that module imports torch).
CHECKPOINTS = "checkpoints"


def versions() -> dict[str, str]:
    """Versions of Python and the libraries a run depends on."""
    import monai
    import torch

    import synthmed

    out = {"python": platform.python_version(), "torch": torch.__version__, "monai": monai.__version__,
           "synthmed": synthmed.__version__}
    try:
        import lightning_fabric

        out["lightning_fabric"] = lightning_fabric.__version__
    except ImportError:  # pragma: no cover
        pass
    return out


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """``run.json`` of ``run_dir``.

    Raises:
        SynthmedError: ``run_dir`` is not a run directory.
    """
    file = Path(run_dir) / RUN_JSON
    if not file.is_file():
        raise SynthmedError(f"{run_dir}: not a run directory ({RUN_JSON} missing)")
    return json.loads(file.read_text())


def _diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


@dataclass
class Run:
    """An opened run directory.

    Attributes:
        path: the folder.
        info: the ``run.json`` content.
        resumed: whether an existing run is continued.
    """

    path: Path
    info: dict[str, Any]
    resumed: bool
    lock: FolderLock | None = field(default=None, repr=False, compare=False)

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / "tensorboard"

    def close(self) -> None:
        """Release the run's lock (if this process holds it); the run stays readable."""
        if self.lock is not None:
            self.lock.release()


def open_run(
    run_dir: str | Path,
    *,
    kind: str,
    model: Mapping[str, Any],
    training: Mapping[str, Any],
    seed: int,
    data: Mapping[str, Any] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    write: bool = True,
) -> Run:
    """Start or resume a run; write ``run.json`` (only when ``write``, i.e. on rank 0).

    Args:
        run_dir: the run folder.
        kind: what is trained (e.g. ``"ddpm"``); a resumed run must be of the same kind.
        model: the resolved model config (JSON-serialisable); must equal the saved one on resume.
        training: the resolved training config (may change on resume).
        seed: the run seed (kept from the saved run on resume).
        data: what the run trains on (store path, shape, …).
        resume: continue an existing run.
        overwrite: delete an existing run and start afresh.

    Raises:
        OutputExistsError: ``run_dir`` exists (non-empty) without ``resume`` or ``overwrite``.
        LockedError: with ``write``, another live process is writing the run.
        SynthmedError: ``resume`` of a missing run, or of a run whose kind or model config differs.
    """
    path = Path(run_dir)
    if resume and overwrite:
        raise SynthmedError("give --resume or --overwrite, not both")
    lock, created = None, not path.exists()
    if write and not path.is_file():
        lock = FolderLock(path, "run directory")  # before anything is read, checked or deleted
        remove_stale(path, ownerless=True)
        remove_stale(path / CHECKPOINTS, ownerless=True)
    try:
        run = _open(path, kind=kind, model=model, training=training, seed=seed, data=data, resume=resume,
                    overwrite=overwrite, write=write)
    except BaseException:
        if lock is not None:
            lock.release()
            if created:  # leave no folder behind that only the lock made
                lock.path.unlink(missing_ok=True)
                try:
                    path.rmdir()
                except OSError:
                    pass
        raise
    run.lock = lock
    return run


def _open(path: Path, *, kind: str, model: Mapping[str, Any], training: Mapping[str, Any], seed: int,
          data: Mapping[str, Any] | None, resume: bool, overwrite: bool, write: bool) -> Run:
    """:func:`open_run` once the lock is held."""
    exists = not is_empty_dir(path) if path.is_dir() else path.exists()
    if resume:
        if not exists:
            raise SynthmedError(f"{path}: nothing to resume (no such run); drop --resume to start one")
        saved = read_run(path)
        if saved.get("kind") != kind:
            raise SynthmedError(f"{path}: --resume of a {saved.get('kind')!r} run as {kind!r}")
        changes = _diff(saved.get("model", {}), dict(model))
        if changes:
            raise SynthmedError(f"{path}: --resume with a changed model config ({'; '.join(changes)}); "
                                "start a new RUN or pass --overwrite")
        info = dict(saved, training=dict(training), data=dict(data or saved.get("data", {})), versions=versions())
        if write:
            _write(path, info)
        return Run(path, info, resumed=True)
    if exists and not overwrite:
        raise OutputExistsError(path)
    info = {"kind": kind, "model": dict(model), "training": dict(training), "data": dict(data or {}),
            "seed": int(seed), "versions": versions()}
    if write:
        if exists:
            _clear(path)
        path.mkdir(parents=True, exist_ok=True)
        _write(path, info)
    return Run(path, info, resumed=False)


def _clear(path: Path) -> None:
    """Delete an overwritten run: everything in it but the lock we hold."""
    if not path.is_dir():
        path.unlink()
        return
    for entry in path.iterdir():
        if entry.name == LOCK_FILE:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _write(path: Path, info: Mapping[str, Any]) -> None:
    with atomic_file(path / RUN_JSON) as tmp:
        tmp.write_text(json.dumps(dict(info), indent=2, default=str) + "\n")
