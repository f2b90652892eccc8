"""The trained network of a run directory: which checkpoint (best, last or auto) and loading it.

Shared by the networks that are trained and then *used* as one module (segmenters,
classifiers): their runs keep ``checkpoints/step_*/<file>`` and, when they validate,
``checkpoints/best/<file>`` (:mod:`synthmed.training.checkpoint`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from synthmed.errors import SynthmedError
from synthmed.training.checkpoint import latest_checkpoint, load_latest, load_weights, read_state
from synthmed.training.fabric import resolve_device
from synthmed.training.run import RUN_JSON, read_run

CHECKPOINTS = ("auto", "best", "last")


def run_weights(run_dir: str | Path, kind: str, checkpoint: str = "auto",
                file: str = "model.safetensors") -> tuple[Path, str, int]:
    """``(weights file, checkpoint name, step)`` of a ``kind`` run.

    ``checkpoint``: ``best`` (the validation monitor's best), ``last``, or ``auto`` (best if the
    run validated, else last).

    Raises:
        SynthmedError: no run at ``run_dir``, a run of another kind, a bad ``checkpoint``, or no
            such checkpoint yet.
    """
    run_dir = Path(run_dir)
    if not (run_dir / RUN_JSON).is_file():
        raise SynthmedError(f"{run_dir}: no such {kind} run ({RUN_JSON} missing)")
    info = read_run(run_dir)
    if info.get("kind") != kind:
        raise SynthmedError(f"{run_dir}: a {info.get('kind')!r} run, not a {kind} run")
    if checkpoint not in CHECKPOINTS:
        raise SynthmedError(f"--checkpoint must be auto, best or last, got {checkpoint!r}")
    state = read_state(run_dir) or {}
    if checkpoint in ("auto", "best") and "best" in state:
        return run_dir / state["best"]["checkpoint"] / file, "best", int(state["best"]["step"])
    if checkpoint == "best":
        raise SynthmedError(f"{run_dir}: no best checkpoint (the run has no validation subjects)")
    latest = latest_checkpoint(run_dir)
    if latest is None:
        raise SynthmedError(f"{run_dir}: the run has no checkpoint yet")
    return latest[1] / file, "last", latest[0]


def load_run_network(run_dir: str | Path, kind: str, build: Callable[[Mapping[str, Any]], torch.nn.Module], *,
                     checkpoint: str = "auto", device: str = "auto"
                     ) -> tuple[torch.nn.Module, dict[str, Any], dict[str, Any]]:
    """The trained network of a ``kind`` run, in eval mode on ``device``.

    ``build(run_info)`` makes the untrained network the weights load into. A damaged last
    checkpoint falls back to the previous kept one, with a warning
    (:func:`~synthmed.training.checkpoint.load_latest`).

    Returns:
        ``(network, run_info, {"name", "step"})``.

    Raises:
        SynthmedError: see :func:`run_weights`; weights that do not fit the network.
    """
    run_dir = Path(run_dir)
    weights, name, step = run_weights(run_dir, kind, checkpoint)
    info = read_run(run_dir)

    def read(file: Path) -> torch.nn.Module:
        net = build(info)
        load_weights(net, file)
        return net

    if name == "last":
        found = load_latest(run_dir, lambda folder: read(folder / weights.name))
        assert found is not None
        step, net = found[0], found[2]
    else:
        net = read(weights)
    return net.to(resolve_device(device)).eval(), info, {"name": name, "step": step}
