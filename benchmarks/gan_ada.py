"""ADA's cost: a StyleGAN 2 training iteration with and without the augmentation pipeline.

Same process, same networks and data: two :class:`~synthmed.generators.gan.GANTask` s
built from the same seed, one with ADA at a fixed ``p = 0.6`` (every transform active on
about 60 % of the images, plus mirroring) and one with augmentation off (no ADA, no
mirror). Iterations alternate between the two (so bursts of load from other processes hit
both alike); the overhead is the ratio of the median iteration times - 1.
Target: <= 15 %. Writes benchmarks/results/gan_ada.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _common import write_result

from synthmed.generators.gan.config import PRESETS
from synthmed.generators.gan.task import GANTask
from synthmed.training.fabric import FabricOptions, make_fabric, resolve_device
from synthmed.training.loop import StepContext
from synthmed.training.seeding import StepRandom

TARGET = 0.15


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6, help="timed iterations per variant")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads on the CPU")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "gan_ada.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fabric = make_fabric(FabricOptions(device=resolve_device(args.device)))
    preset = PRESETS["stylegan2"][args.preset]
    config = preset.model.model_copy(update={"resolution": args.size})
    base = preset.train.model_copy(update={"batch": args.batch})
    tasks = {"ada": GANTask(config, base.model_copy(update={"ada": False, "mirror": True}), seed=0),
             "plain": GANTask(config, base.model_copy(update={"ada": False, "mirror": False}), seed=0)}
    for task in tasks.values():
        task.setup(fabric)
    tasks["ada"].augment.p.fill_(0.6)  # fixed p (not adaptive): the cost of the full pipeline
    gen = torch.Generator(device="cpu").manual_seed(0)
    images = torch.rand(args.batch, config.image_channels, args.size, args.size, generator=gen).to(fabric.device)
    labels = torch.randint(0, 4, (args.batch, args.size, args.size), generator=gen, dtype=torch.uint8).to(fabric.device)
    times: dict[str, list[float]] = {k: [] for k in tasks}
    for s in range(1, args.steps + 2):  # step 0 skipped: the lazy regularisers run at their usual rate
        for name, task in tasks.items():
            ctx = StepContext(s, StepRandom(0, s, device=fabric.device), fabric)
            t0 = time.perf_counter()
            task.training_step((images, labels), ctx)
            if fabric.device.type == "cuda":
                torch.cuda.synchronize()
            if s > 1:  # the first iteration warms up
                times[name].append(time.perf_counter() - t0)
    ada, plain = statistics.median(times["ada"]), statistics.median(times["plain"])
    overhead = ada / plain - 1
    result = {"benchmark": "gan_ada", "model": f"stylegan2 {args.preset} preset at {args.size} px",
              "batch": args.batch, "device": str(fabric.device), "torch_threads": args.threads,
              "iterations": args.steps, "ada_p": 0.6,
              "median_iteration_s": {"with_ada": round(ada, 4), "without": round(plain, 4)},
              "overhead": round(overhead, 4), "target": TARGET, "meets_target": overhead <= TARGET}
    write_result(args.out, result)


if __name__ == "__main__":
    main()
