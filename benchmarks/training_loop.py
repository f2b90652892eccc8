"""Training-loop overhead: the full loop vs a bare loop stepping the same model.

- full: ``synthmed.training.train`` with the diffusion task — store → batch stream
  (DataLoader over StoreDataset) → device → step, with per-step seeding, progress bar and
  TensorBoard logging;
- bare: the same task's ``training_step`` called in a plain ``for`` loop on batches preloaded
  in memory (same model, batch, steps, seed), same process.

Both record the start time of every step; a step's cost is the interval to the next step's
start (for the full loop it includes fetching and moving the batch, seeding, logging and the
progress bar). samples/s = batch / median interval over all steps of ``--repeats``
interleaved runs (the median resists bursts of load from other processes on a shared machine;
the mean-based rates are reported too). Target: full samples/s >= 90 % of bare.
Writes benchmarks/results/training_loop.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from synthmed.data.store import Store, StoreWriter
from synthmed.generators.config import PRESETS
from synthmed.generators.diffusion.model import DiffusionGenerator
from synthmed.generators.diffusion.task import DiffusionTask
from synthmed.training import (
    FabricOptions,
    LoopOptions,
    StepContext,
    StepRandom,
    batch_stream,
    make_fabric,
    open_run,
    train,
)

TARGET = 0.9
PROGRESS = True


def random_store(path: Path, *, n: int = 256, side: int = 32, seed: int = 0) -> Store:
    """``n`` 4×side×side samples (smooth noise in [0, 1]) with blob masks, all in split ``train``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, side), np.linspace(-1, 1, side), indexing="ij")
    with StoreWriter(path, dims=2, channels=("t1", "t1ce", "t2", "flair"), sample_shape=(4, side, side),
                     spacing=(1, 1, 1), normalisation={}, provenance={"benchmark": True}, synthetic=False) as writer:
        for start in range(0, n, 64):
            m = min(64, n - start)
            cy, cx = rng.uniform(-0.5, 0.5, (2, m, 1, 1))
            r = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
            labels = np.select([r < 0.15, r < 0.3, r < 0.45], [1, 3, 2], 0).astype(np.uint8)
            images = np.clip(0.5 + 0.3 * np.cos(4 * r)[:, None] + 0.05 * rng.standard_normal((m, 4, side, side)), 0, 1)
            rows = [{"case_id": f"b{i}", "slice": 0, "split": "train", "source": "benchmark"} for i in range(start, start + m)]
            writer.append(images.astype(np.float32), labels, rows)
    return writer.store


class TimedTask(DiffusionTask):
    """Records the start time of every step and the end of the last."""

    def training_step(self, batch, ctx):  # noqa: ANN001
        self.__dict__.setdefault("starts", []).append(time.perf_counter())
        out = super().training_step(batch, ctx)
        self.end = time.perf_counter()
        return out

    def intervals(self) -> list[float]:
        return [b - a for a, b in zip(self.starts, self.starts[1:] + [self.end])][1:]  # first step: warm-up


def full_loop(store, config, train_cfg, run: Path, steps: int) -> list[float]:
    fabric = make_fabric(FabricOptions(device="cpu"))
    task = TimedTask(config, train_cfg, seed=0)
    opened = open_run(run, kind="bench", model={}, training={}, seed=0, overwrite=True)
    ds = store.dataset(split="train")
    options = LoopOptions(steps=steps, checkpoint_every=10**9, log_every=10, progress=PROGRESS, description="full loop")
    train(task, fabric, opened, lambda s: batch_stream(ds, train_cfg.batch, seed=0, start_step=s), options)
    return task.intervals()


def bare_loop(store, config, train_cfg, steps: int) -> list[float]:
    fabric = make_fabric(FabricOptions(device="cpu"))
    task = TimedTask(config, train_cfg, seed=0)
    task.setup(fabric)
    images, labels = store.read(slice(0, train_cfg.batch * steps))
    batches = [(torch.from_numpy(images[i : i + train_cfg.batch]), torch.from_numpy(labels[i : i + train_cfg.batch]))
               for i in range(0, len(images), train_cfg.batch)]
    for step, batch in enumerate(batches):
        task.training_step(batch, StepContext(step, StepRandom(0, step), fabric))
    return task.intervals()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1 resists oversubscription on a shared machine)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "training_loop.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    preset = PRESETS["tiny"]
    train_cfg = preset.train.model_copy(update={"batch": args.batch, "steps": args.steps})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = random_store(tmp / "store", n=512, side=args.size)
        config = DiffusionGenerator(preset.model).config_for(store)
        full, bare = [], []
        for r in range(args.repeats):  # interleaved, so load changes hit both
            bare += bare_loop(store, config, train_cfg, args.steps)
            full += full_loop(store, config, train_cfg, tmp / f"run{r}", args.steps)
    b = args.batch
    full_rate, bare_rate = b / statistics.median(full), b / statistics.median(bare)
    ratio = full_rate / bare_rate
    result = {
        "benchmark": "training_loop",
        "model": "ddpm tiny preset", "image": [4, args.size, args.size], "batch": args.batch, "steps": args.steps,
        "device": "cpu", "torch_threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "full_loop_samples_per_s": round(full_rate, 2), "bare_loop_samples_per_s": round(bare_rate, 2),
        "mean_based": {"full_loop_samples_per_s": round(b * len(full) / sum(full), 2),
                       "bare_loop_samples_per_s": round(b * len(bare) / sum(bare), 2)},
        "ratio": round(ratio, 3), "target": TARGET, "meets_target": ratio >= TARGET,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
