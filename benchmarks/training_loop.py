"""Training-loop overhead: the full loop vs a bare loop stepping the same model.

- full: ``synthmed.training.train`` with the diffusion task — store → batch stream
  (``batch_stream``) → device → step, with per-step seeding, progress bar and
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
import tempfile
from pathlib import Path

import torch
from _common import RESULTS, bare_loop, full_loop, loop_rates, random_store, timed, write_result

from synthmed.generators.config import PRESETS
from synthmed.generators.diffusion.model import DiffusionGenerator
from synthmed.generators.diffusion.task import DiffusionTask

TARGET = 0.9
TimedTask = timed(DiffusionTask)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1 resists oversubscription on a shared machine)")
    parser.add_argument("--out", type=Path, default=RESULTS / "training_loop.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    preset = PRESETS["tiny"]
    train_cfg = preset.train.model_copy(update={"batch": args.batch, "steps": args.steps})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = random_store(tmp / "store", n=512, side=args.size)
        config = DiffusionGenerator(preset.model).config_for(store)
        dataset = store.dataset(split="train")
        full, bare = [], []
        for r in range(args.repeats):  # interleaved, so load changes hit both
            bare += bare_loop(TimedTask(config, train_cfg, seed=0), store, args.batch, args.steps)
            full += full_loop(TimedTask(config, train_cfg, seed=0), dataset, args.batch, tmp / f"run{r}", args.steps,
                              progress=True)
    write_result(args.out, {
        "benchmark": "training_loop",
        "model": "ddpm tiny preset", "image": [4, args.size, args.size], "batch": args.batch, "steps": args.steps,
        "device": "cpu", "torch_threads": torch.get_num_threads(), "repeats": args.repeats,
        **loop_rates(full, bare, args.batch, TARGET),
    })


if __name__ == "__main__":
    main()
