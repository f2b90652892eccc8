"""The one training loop: every trainer (diffusion, GANs, segmentation) runs through :func:`train`.

A *task* owns the networks and the maths; the loop owns everything around them: data
stream, per-step randomness, progress bar, TensorBoard, checkpoints, resume, validation and
the best checkpoint.

The task protocol (:class:`TrainingTask`)
-----------------------------------------

Required:

``setup(fabric)``
    Build networks and optimisers and pass them through ``fabric.setup(model, optimizer)``
    (several pairs for a GAN). Non-trained copies (EMA) are moved to ``fabric.device``.
``modules() -> {name: nn.Module}``
    Everything with weights to checkpoint, e.g. ``{"model": unet, "ema": ema}`` or
    ``{"generator": g, "discriminator": d, "ema": g_ema}``. Each is saved as
    ``<name>.safetensors``.
``optimizers() -> {name: Optimizer}``
    Optimisers whose state is checkpointed (``{"g": …, "d": …}`` for a GAN).
``training_step(batch, ctx) -> {name: float | Tensor}``
    One *iteration*: forward, ``ctx.fabric.backward(loss)``, ``optimizer.step()``, EMA
    update — as many of each as the method needs (a GAN does a discriminator and a
    generator step, lazy regularisation every k steps, …). ``batch`` is
    ``(images float32 [B, C, *spatial] in [0, 1], labels uint8 [B, *spatial])`` on the
    device. Draw all randomness from ``ctx.random`` (:class:`~synthmed.training.seeding.StepRandom`)
    so that resume and DDP reproduce it. Return scalar logs (losses); they go to the progress
    bar and TensorBoard under ``train/<name>``
    (averaged over processes).

Optional (looked up with ``getattr``):

``preview(step) -> {name: Tensor [N, C, H, W] in [0, 1]}``
    Images for TensorBoard grids, called on rank 0 every ``image_every`` steps.
``validate(step) -> {name: float}``
    Called on every rank every ``validate_every`` steps; logged under ``val/<name>``. With
    ``LoopOptions.monitor`` set, the best value is kept as ``checkpoints/best`` (a run resumed
    with another ``monitor`` starts its best afresh: the saved value is not comparable).
``extra_state() -> dict`` / ``load_extra_state(state)``
    More resumable state (``weights_only``-loadable values only).

The loop guarantees: steps are counted globally from 0; step ``s``'s batch and randomness
depend only on ``(seed, s)``; a checkpoint after step ``s`` (every ``checkpoint_every``
steps and at the end) restores everything, so resuming equals not stopping.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from lightning_fabric import Fabric
from rich.progress import TextColumn

from synthmed.progress import console, progress_bar
from synthmed.training.checkpoint import load_checkpoint, load_latest, save_checkpoint
from synthmed.training.run import Run
from synthmed.training.seeding import StepRandom, rng_state, set_rng_state

Batch = Any


@runtime_checkable
class TrainingTask(Protocol):
    """What a trainer supplies to :func:`train` (see the module docstring)."""

    def setup(self, fabric: Fabric) -> None: ...

    def modules(self) -> Mapping[str, torch.nn.Module]: ...

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]: ...

    def training_step(self, batch: Batch, ctx: StepContext) -> Mapping[str, float | torch.Tensor]: ...


@dataclass
class StepContext:
    """What a training step may use besides its batch.

    Attributes:
        step: the global step (0-based) being run.
        random: this step's random numbers (pure function of ``(seed, step)``, world-size invariant).
        fabric: the Fabric (``backward``, ``device``, ``world_size``, ``all_reduce``, …).
    """

    step: int
    random: StepRandom
    fabric: Fabric


@dataclass(frozen=True)
class LoopOptions:
    """How long to train and how often to log, preview, validate and checkpoint.

    Attributes:
        steps: total steps (a resumed run continues up to this).
        checkpoint_every: write a checkpoint every N steps (and always at the end).
        log_every: TensorBoard scalars and progress-bar text every N steps.
        image_every: TensorBoard preview grids every N steps (0: only at the end).
        validate_every: call ``task.validate`` every N steps (0: never).
        monitor: validation metric kept best (``checkpoints/best``), e.g. ``"dice"``.
        mode: ``"max"`` or ``"min"`` for ``monitor``.
        keep: ``step_*`` checkpoints kept.
        progress: show the progress bar (rank 0).
        description: progress-bar label.
    """

    steps: int
    checkpoint_every: int = 1000
    log_every: int = 10
    image_every: int = 0
    validate_every: int = 0
    monitor: str | None = None
    mode: Literal["max", "min"] = "max"
    keep: int = 2
    progress: bool = True
    description: str = "training"


def _scalar(value: float | torch.Tensor) -> float:
    return float(value.detach().float().item()) if isinstance(value, torch.Tensor) else float(value)


def tile(images: torch.Tensor, columns: int = 8) -> torch.Tensor:
    """``[N, C, H, W]`` → one ``[C, rows·H, columns·W]`` grid (missing cells black)."""
    n, c, h, w = images.shape
    columns = max(1, min(columns, n))
    rows = math.ceil(n / columns)
    grid = images.new_zeros((rows * columns, c, h, w))
    grid[:n] = images
    return grid.view(rows, columns, c, h, w).permute(2, 0, 3, 1, 4).reshape(c, rows * h, columns * w)


def train(
    task: TrainingTask,
    fabric: Fabric,
    run: Run,
    batches: Callable[[int], Iterator[Batch]],
    options: LoopOptions,
) -> int:
    """Run ``task`` from its last checkpoint (or step 0) to ``options.steps``.

    Args:
        task: the trainer (its ``setup`` is called here).
        fabric: a launched Fabric (:func:`~synthmed.training.fabric.make_fabric`).
        run: the opened run directory (:func:`~synthmed.training.run.open_run`); its
            ``info["seed"]`` seeds every step.
        batches: ``start_step → iterator`` of batches for steps ``start_step, …``
            (e.g. :func:`~synthmed.training.data.batch_stream`); batches are moved to the device.
        options: see :class:`LoopOptions`.

    Returns:
        The final step. However it ends, the run's lock is released (:meth:`Run.close`).
    """
    seed = int(run.info["seed"])
    task.setup(fabric)
    start = 0
    best: float | None = None
    # a damaged latest checkpoint falls back to the previous kept one, with a warning
    found = load_latest(run.path, lambda folder: load_checkpoint(folder, task.modules(), task.optimizers())) \
        if run.resumed else None
    if found is not None:
        payload = found[2]
        start = int(payload["step"])
        set_rng_state(payload.get("rng", {}))
        saved = payload.get("extra", {})
        # a best value of another monitor (the rule changed on resume) is not comparable: start afresh
        best = saved.get("_best") if saved.get("_monitor", options.monitor) == options.monitor else None
        if hasattr(task, "load_extra_state"):
            task.load_extra_state(payload.get("extra", {}).get("task", {}))
        if fabric.is_global_zero and options.progress:
            console.print(f"resuming {run.path} from step {start}")
    rank0 = fabric.is_global_zero
    writer = None
    if rank0:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run.tensorboard_dir), purge_step=start if start else None)

    def checkpoint(done: int, name: str | None = None) -> None:
        if rank0:
            extra = {"task": task.extra_state() if hasattr(task, "extra_state") else {}}
            if best is not None:
                extra["_best"], extra["_monitor"] = best, options.monitor
            save_checkpoint(run.path, done, task.modules(), task.optimizers(), rng=rng_state(), extra=extra,
                            name=name, keep=options.keep, state_fields={"steps": options.steps})
        fabric.barrier()

    step = start
    try:
        if start >= options.steps:
            if found is None:
                checkpoint(start)
            return start
        stream = batches(start)
        text = TextColumn("{task.fields[logs]}")
        with progress_bar(enabled=rank0 and options.progress, extra=[text]) as bar:
            bar_task = bar.add_task(options.description, total=options.steps, completed=start, logs="")
            t0, samples = time.perf_counter(), 0
            for step in range(start, options.steps):
                batch = fabric.to_device(next(stream))
                ctx = StepContext(step, StepRandom(seed, step, rank=fabric.global_rank,
                                                   world_size=fabric.world_size, device=fabric.device), fabric)
                logs = task.training_step(batch, ctx)
                samples += _batch_len(batch) * fabric.world_size
                done = step + 1
                if done % options.log_every == 0 or done == options.steps:
                    values = _mean_over_ranks(fabric, logs)
                    rate = samples / max(time.perf_counter() - t0, 1e-9)
                    if writer is not None:
                        for k, v in values.items():
                            writer.add_scalar(f"train/{k}", v, done)
                        writer.add_scalar("train/samples_per_s", rate, done)
                    bar.update(bar_task, logs=" ".join(f"{k} {v:.4g}" for k, v in values.items()))
                if rank0 and hasattr(task, "preview") and (
                    (options.image_every and done % options.image_every == 0) or done == options.steps
                ):
                    for k, images in task.preview(done).items():
                        writer.add_image(f"samples/{k}", tile(images.detach().float().cpu().clamp(0, 1)), done)
                if options.validate_every and hasattr(task, "validate") and (
                    done % options.validate_every == 0 or done == options.steps
                ):
                    metrics = {k: float(v) for k, v in task.validate(done).items()}
                    if writer is not None:
                        for k, v in metrics.items():
                            writer.add_scalar(f"val/{k}", v, done)
                    if options.monitor is not None:
                        value = metrics[options.monitor]
                        if best is None or (value > best if options.mode == "max" else value < best):
                            best = value
                            checkpoint(done, "best")
                if done % options.checkpoint_every == 0 or done == options.steps:
                    checkpoint(done)
                bar.advance(bar_task)
        step = options.steps
        return step
    finally:
        if writer is not None:
            writer.close()
        run.close()  # the run's lock: another process may now resume it


def _mean_over_ranks(fabric: Fabric, logs: Mapping[str, float | torch.Tensor]) -> dict[str, float]:
    """Logged scalars averaged over processes (so logs do not depend on the world size)."""
    if fabric.world_size == 1 or not logs:
        return {k: _scalar(v) for k, v in logs.items()}
    keys = sorted(logs)
    local = torch.tensor([_scalar(logs[k]) for k in keys], dtype=torch.float64, device=fabric.device)
    mean = fabric.all_reduce(local, reduce_op="mean")
    return dict(zip(keys, mean.tolist()))


def _batch_len(batch: Batch) -> int:
    first = batch[0] if isinstance(batch, (tuple, list)) else batch
    return int(first.shape[0]) if isinstance(first, torch.Tensor) else 1
