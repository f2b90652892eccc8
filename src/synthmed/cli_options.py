"""The command-line options several ``synthmed`` commands share, each declared once as an ``Annotated`` alias.

A command takes one as its parameter's annotation and keeps its default beside it
(``device: Device = "auto"``), so the option's name, help and type are written here and its
default stays in the command. An option whose help says something particular to one command (what
``--seed`` seeds, what ``--overwrite`` replaces, what ``--validate-every`` ranks by) is declared in
that command instead.

Importing this module imports only typer: ``--help`` stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from synthmed.training.fabric import FabricOptions

# Where and how to compute (see synthmed.training.fabric).
Device = Annotated[str, typer.Option(help="auto (CUDA if present, else CPU), cpu or cuda.")]
Devices = Annotated[int, typer.Option(help="Processes (GPUs) on this node; >1 trains with DDP. Under torchrun/SLURM "
                                           "the launcher's count is used.")]
Precision = Annotated[str, typer.Option(help="auto (bf16 or fp16 mixed on GPU, 32 on CPU), 32, bf16 or fp16.")]
LoaderWorkers = Annotated[int, typer.Option(help="DataLoader worker processes decoding batches ahead.")]

# What a command shows and prints.
Progress = Annotated[bool, typer.Option(help="Show the progress bar.")]
ProgressBars = Annotated[bool, typer.Option(help="Show the progress bars.")]
Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
JsonSummary = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]
Force = Annotated[bool, typer.Option(help="Go ahead even if the memory or disk estimate exceeds this machine's.")]

# Training runs (a run directory opened by synthmed.training.run.open_run, trained by synthmed.training.loop).
ResumeRun = Annotated[bool, typer.Option(help="Continue the run directory from its last checkpoint (the model config "
                                              "must be unchanged).")]
OverwriteRun = Annotated[bool, typer.Option(help="Delete the run directory if it exists and start afresh.")]
TrainStores = Annotated[list[Path], typer.Option("--train", help="Training store (repeat for several: real, synthetic "
                                                                 "or both); their 'train' splits are used.")]
TrainSteps = Annotated[Optional[int], typer.Option(help="Total training steps (default: the preset's); with --resume, "
                                                        "train up to this.")]
TrainBatch = Annotated[Optional[int], typer.Option(help="Batch per process (default: the preset's); the global batch "
                                                        "is batch × processes.")]
AdamLr = Annotated[Optional[float], typer.Option(help="Adam learning rate (default: the preset's).")]
ValFraction = Annotated[Optional[float], typer.Option(help="Share of training subjects held out for validation "
                                                           "(default 0.2).")]
CheckpointEvery = Annotated[Optional[int], typer.Option(help="Write a checkpoint every N steps (and at the end) "
                                                             "(default: the preset's).")]

# Subject-bootstrap intervals.
NBoot = Annotated[int, typer.Option(help="Bootstrap resamples of the test subjects for the intervals.")]


def fabric_options(device: str, devices: int, precision: str) -> FabricOptions:
    """The :class:`~synthmed.training.fabric.FabricOptions` of ``--device``, ``--devices`` and ``--precision``
    (checked when Fabric starts: :func:`~synthmed.training.fabric.make_fabric`). Imports torch."""
    from synthmed.training.fabric import FabricOptions

    return FabricOptions(device=device, devices=devices, precision=precision)  # type: ignore[arg-type]


__all__ = ["AdamLr", "CheckpointEvery", "Device", "Devices", "Force", "Json", "JsonSummary", "LoaderWorkers", "NBoot",
           "OverwriteRun", "Precision", "Progress", "ProgressBars", "ResumeRun", "TrainBatch", "TrainStores",
           "TrainSteps", "ValFraction", "fabric_options"]
