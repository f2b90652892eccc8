"""Lightning Fabric set-up from the CLI's ``--device``, ``--devices`` and ``--precision``, and the
module under its wrappers (:func:`unwrap`).

* ``device``: ``auto`` (CUDA if present, else CPU), ``cpu`` or ``cuda``.
* ``devices``: processes on this node. More than one → DDP (gloo on CPU, NCCL on CUDA);
  Fabric starts the extra processes itself. Under ``torchrun`` (``LOCAL_WORLD_SIZE`` set) or
  a multi-task SLURM job (``SLURM_NTASKS`` > 1), the launcher's process count wins and Fabric
  joins the existing processes.
* ``precision``: ``auto`` (bf16 mixed on GPUs that support it, else fp16 mixed; 32-bit on
  CPU), ``32``, ``bf16`` or ``fp16``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import torch
from lightning_fabric import Fabric

from synthmed.errors import SynthmedError

DeviceName = Literal["auto", "cpu", "cuda"]
PrecisionName = Literal["auto", "32", "bf16", "fp16"]


@dataclass(frozen=True)
class FabricOptions:
    """Where and how to train.

    Attributes:
        device: ``auto``, ``cpu`` or ``cuda``.
        devices: processes (GPUs, or CPU processes) per node.
        num_nodes: nodes (multi-node through torchrun/SLURM).
        precision: ``auto``, ``32``, ``bf16`` or ``fp16``.
    """

    device: DeviceName = "auto"
    devices: int = 1
    num_nodes: int = 1
    precision: PrecisionName = "auto"


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` if available else ``cpu``; ``cuda`` without a GPU is an error."""
    if device not in ("auto", "cpu", "cuda"):
        raise SynthmedError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise SynthmedError("--device cuda: no CUDA GPU is available (use --device cpu or auto)")
    return device


def resolve_precision(precision: str, device: str) -> str:
    """Fabric precision string for ``precision`` on ``device`` (mixed precision only on GPU)."""
    if precision not in ("auto", "32", "bf16", "fp16"):
        raise SynthmedError(f"--precision must be auto, 32, bf16 or fp16, got {precision!r}")
    if device == "cpu":
        if precision not in ("auto", "32"):
            raise SynthmedError(f"--precision {precision} needs a GPU; on CPU training is 32-bit")
        return "32-true"
    if precision == "auto":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return {"32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed"}[precision]


def launched_processes() -> int | None:
    """Processes per node started by an external launcher (torchrun, SLURM), else ``None``."""
    if "LOCAL_WORLD_SIZE" in os.environ and "TORCHELASTIC_RUN_ID" in os.environ:
        return int(os.environ["LOCAL_WORLD_SIZE"])
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        return int(os.environ.get("SLURM_NTASKS_PER_NODE", os.environ["SLURM_NTASKS"]).split("(")[0])
    return None


def make_fabric(options: FabricOptions) -> Fabric:
    """A launched :class:`Fabric` for ``options`` (DDP when more than one process).

    Raises:
        SynthmedError: an unknown device or precision, CUDA asked for but absent, or
            ``devices`` < 1.
    """
    if options.devices < 1 or options.num_nodes < 1:
        raise SynthmedError(f"--devices must be >= 1, got {options.devices}")
    device = resolve_device(options.device)
    precision = resolve_precision(options.precision, device)
    devices = launched_processes() or options.devices
    nodes = options.num_nodes
    if "WORLD_SIZE" in os.environ and launched_processes():
        nodes = max(1, int(os.environ["WORLD_SIZE"]) // devices)
    strategy = "ddp" if devices * nodes > 1 else "auto"
    fabric = Fabric(accelerator=device, devices=devices, num_nodes=nodes, strategy=strategy, precision=precision)
    fabric.launch()
    if strategy == "ddp":
        atexit.register(_destroy_process_group)
    return fabric


#: how long a finishing rank waits at exit for the others before shutting its process group down.
EXIT_BARRIER_TIMEOUT = timedelta(seconds=120)


def _destroy_process_group() -> None:
    """Shut a DDP run's process group down while Python still runs (registered with :mod:`atexit`).

    Left to gloo's destructors at interpreter exit, a rank was seen to abort under load
    ("terminate called without an active exception"), and, rarely, with the group destroyed here
    too. The ranks therefore first meet at a barrier (gloo's ``monitored_barrier``, at most
    :data:`EXIT_BARRIER_TIMEOUT`, so a rank that died does not hold the others), and no rank shuts
    its connections while a peer is still busy: rank 0 writes a run's outputs after the others
    are done.
    """
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return
    if dist.get_backend() == "gloo":
        with contextlib.suppress(RuntimeError):
            dist.monitored_barrier(timeout=EXIT_BARRIER_TIMEOUT, wait_all_ranks=True)
    dist.destroy_process_group()


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The user module under Fabric / DDP / DataParallel wrappers."""
    from lightning_fabric.wrappers import _FabricModule

    wrappers = (_FabricModule, torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    while isinstance(module, wrappers):
        module = module.module
    return module
