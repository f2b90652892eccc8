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
import sys
import tempfile
from pathlib import Path

import torch
from _common import RESULTS, bare_loop, full_loop, loop_rates, random_store, timed, write_result

from synthmed.segmentation import SegmentationTask, build_training_set, resolve_configs
from synthmed.segmentation.api import config_for

TARGET = 0.9
TimedTask = timed(SegmentationTask)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--aug", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1 resists oversubscription on a shared machine)")
    parser.add_argument("--out", type=Path, default=RESULTS / "segmentation_loop.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config, tc = resolve_configs("unet", "tiny", {}, {"batch": args.batch, "steps": args.steps, "aug": args.aug})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = random_store(tmp / "store", n=512, side=args.size, slices_per_case=4)
        config = config_for(config, store)
        data = build_training_set([store], seed=0, val_fraction=0.0)
        full, bare = [], []
        for r in range(args.repeats):  # interleaved, so load changes hit both
            bare += bare_loop(TimedTask(config, tc, seed=0), store, tc.batch, args.steps)
            full += full_loop(TimedTask(config, tc, seed=0), data.train, tc.batch, tmp / f"run{r}", args.steps,
                              progress=sys.stderr.isatty())
    write_result(args.out, {
        "benchmark": "segmentation_loop",
        "model": f"unet tiny preset {list(config.filters)}", "aug": args.aug, "image": [4, args.size, args.size],
        "batch": tc.batch, "steps": args.steps, "device": "cpu", "torch_threads": torch.get_num_threads(),
        "repeats": args.repeats, **loop_rates(full, bare, tc.batch, TARGET),
    })


if __name__ == "__main__":
    main()
