"""Segmentation training-loop overhead: ``synthmed.training.train`` with the segmentation task
vs a bare loop stepping the same task on preloaded tensors.

- full: store → :class:`~synthmed.segmentation.MixedDataset` (the training set of
  :func:`~synthmed.segmentation.build_training_set`) → ``batch_stream`` → device → step, with
  per-step seeding, progress bar and TensorBoard logging (validation off: it is not loop
  overhead);
- bare: the same task's ``training_step`` in a plain ``for`` loop over batches preloaded in
  memory (same network, batch, steps, seed, augmentation), same process.

Each step's start time is recorded; a step's cost is the interval to the next step's start
(the full loop's includes fetching and moving the batch, seeding, logging and the progress
bar). samples/s = batch / median interval over ``--repeats`` interleaved runs. Target: full
>= 90 % of bare. Writes benchmarks/results/segmentation_loop.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from synthmed.data.store import Store, StoreWriter
from synthmed.segmentation import SegmentationTask, build_training_set, resolve_configs
from synthmed.segmentation.api import config_for
from synthmed.training import FabricOptions, LoopOptions, StepContext, StepRandom, batch_stream, make_fabric, open_run, train

TARGET = 0.9


def random_store(path: Path, *, n: int, side: int, seed: int = 0) -> Store:
    """``n`` 4×side×side slices of smooth noise with blob masks, 4 slices per case, all in ``train``."""
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
            rows = [{"case_id": f"c{i // 4}", "slice": i % 4, "split": "train", "source": "benchmark"}
                    for i in range(start, start + m)]
            writer.append(images.astype(np.float32), labels, rows)
    return writer.store


class TimedTask(SegmentationTask):
    """Records the start time of every step and the end of the last."""

    def training_step(self, batch, ctx):  # noqa: ANN001
        self.__dict__.setdefault("starts", []).append(time.perf_counter())
        out = super().training_step(batch, ctx)
        self.end = time.perf_counter()
        return out

    def intervals(self) -> list[float]:
        return [b - a for a, b in zip(self.starts, self.starts[1:] + [self.end])][1:]  # first step: warm-up


def full_loop(data, config, tc, run: Path, steps: int, progress: bool) -> list[float]:
    fabric = make_fabric(FabricOptions(device="cpu"))
    task = TimedTask(config, tc, seed=0)
    opened = open_run(run, kind="bench", model={}, training={}, seed=0, overwrite=True)
    options = LoopOptions(steps=steps, checkpoint_every=10**9, log_every=10, progress=progress, description="full loop")
    train(task, fabric, opened, lambda s: batch_stream(data.train, tc.batch, seed=0, start_step=s), options)
    return task.intervals()


def bare_loop(store, config, tc, steps: int) -> list[float]:
    fabric = make_fabric(FabricOptions(device="cpu"))
    task = TimedTask(config, tc, seed=0)
    task.setup(fabric)
    images, labels = store.read(slice(0, tc.batch * steps))
    batches = [(torch.from_numpy(images[i : i + tc.batch]), torch.from_numpy(labels[i : i + tc.batch]))
               for i in range(0, len(images), tc.batch)]
    for step, batch in enumerate(batches):
        task.training_step(batch, StepContext(step, StepRandom(0, step), fabric))
    return task.intervals()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--aug", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1 resists oversubscription on a shared machine)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "segmentation_loop.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config, tc = resolve_configs("unet", "tiny", {}, {"batch": args.batch, "steps": args.steps, "aug": args.aug})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = random_store(tmp / "store", n=512, side=args.size)
        config = config_for(config, store)
        data = build_training_set([store], seed=0, val_fraction=0.0)
        full, bare = [], []
        for r in range(args.repeats):  # interleaved, so load changes hit both
            bare += bare_loop(store, config, tc, args.steps)
            full += full_loop(data, config, tc, tmp / f"run{r}", args.steps, sys.stderr.isatty())
    b = args.batch
    full_rate, bare_rate = b / statistics.median(full), b / statistics.median(bare)
    ratio = full_rate / bare_rate
    result = {
        "benchmark": "segmentation_loop",
        "model": f"unet tiny preset {list(config.filters)}", "aug": args.aug, "image": [4, args.size, args.size],
        "batch": b, "steps": args.steps, "device": "cpu", "torch_threads": torch.get_num_threads(),
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
