"""The one training toolkit: Fabric set-up, data stream, seeding, EMA, checkpoints, run
directories and the loop. Every trainer uses it; none re-implements it.

See :mod:`synthmed.training.loop` for the task protocol.
"""

from synthmed.training.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    load_weights,
    read_state,
    save_checkpoint,
    save_weights,
)
from synthmed.training.data import StepBatchSampler, batch_stream, tensor_batches
from synthmed.training.ema import EMA, half_life_decay
from synthmed.training.fabric import FabricOptions, make_fabric, resolve_device, resolve_precision
from synthmed.training.loop import LoopOptions, StepContext, TrainingTask, tile, train
from synthmed.training.run import Run, open_run, read_run, versions
from synthmed.training.seeding import StepRandom, derive_seed, make_generator, seeded_init

__all__ = [
    "EMA",
    "FabricOptions",
    "LoopOptions",
    "Run",
    "StepBatchSampler",
    "StepContext",
    "StepRandom",
    "TrainingTask",
    "batch_stream",
    "derive_seed",
    "half_life_decay",
    "latest_checkpoint",
    "load_checkpoint",
    "load_weights",
    "make_fabric",
    "make_generator",
    "open_run",
    "read_run",
    "read_state",
    "resolve_device",
    "resolve_precision",
    "save_checkpoint",
    "save_weights",
    "seeded_init",
    "tensor_batches",
    "tile",
    "train",
    "versions",
]
