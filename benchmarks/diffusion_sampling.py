"""Sampling speed: DDIM with 50 steps vs 1000-step ancestral DDPM, same model, same process.

The model is the ``tiny`` preset's UNet with T = 1000 train timesteps on 4×32×32 images
(5 encoded channels), untrained (the cost of a network evaluation does not depend on the
weights). Each sampler draws ``--n`` images in one batch; seconds per image are wall time
(DDIM: best of 3 runs, DDPM: one run). Also reported: the median time of one network
evaluation in each run, and the speed-up it implies, which resists bursts of load from
other processes. Target: DDIM-50 >= 15× faster per image than DDPM-1000 by both measures.
Writes benchmarks/results/diffusion_sampling.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _common import write_result

from synthmed.generators.config import PRESETS
from synthmed.generators.diffusion.networks import build_unet
from synthmed.generators.diffusion.samplers import sample_encoded
from synthmed.training.seeding import make_generator

TARGET = 15.0


def run(model, config, n: int, sampler: str, steps: int) -> tuple[float, list[float]]:
    """Wall seconds and per-evaluation intervals of sampling ``n`` images."""
    marks = [time.perf_counter()]
    start = marks[0]
    sample_encoded(model, config, n, sampler=sampler, steps=steps, generator=make_generator(0), device="cpu",
                   on_step=lambda: marks.append(time.perf_counter()))
    wall = time.perf_counter() - start
    return wall, [b - a for a, b in zip(marks, marks[1:])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--ddpm-steps", type=int, default=1000)
    parser.add_argument("--ddim-steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1 resists oversubscription on a shared machine)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "diffusion_sampling.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = PRESETS["tiny"].model.model_copy(update={"train_timesteps": args.ddpm_steps,
                                                      "image_shape": (args.size, args.size)})
    torch.manual_seed(0)
    model = build_unet(config).eval()
    run(model, config, args.n, "ddim", 5)  # warm-up
    ddim = [run(model, config, args.n, "ddim", args.ddim_steps) for _ in range(3)]
    ddim_wall = min(w for w, _ in ddim)
    ddpm_wall, ddpm_steps = run(model, config, args.n, "ddpm", args.ddpm_steps)
    ddim_eval = statistics.median([x for _, steps in ddim for x in steps])
    ddpm_eval = statistics.median(ddpm_steps)
    speedup = ddpm_wall / ddim_wall
    result = {
        "benchmark": "diffusion_sampling",
        "model": "ddpm tiny preset, T=1000", "image": [4, args.size, args.size], "batch": args.n, "device": "cpu",
        "torch_threads": args.threads,
        "ddpm": {"steps": args.ddpm_steps, "wall_s": round(ddpm_wall, 3), "s_per_image": round(ddpm_wall / args.n, 4),
                 "median_eval_s": round(ddpm_eval, 5)},
        "ddim": {"steps": args.ddim_steps, "wall_s": round(ddim_wall, 3), "s_per_image": round(ddim_wall / args.n, 4),
                 "median_eval_s": round(ddim_eval, 5)},
        "speedup": round(speedup, 2),
        "speedup_from_median_eval": round(args.ddpm_steps * ddpm_eval / (args.ddim_steps * ddim_eval), 2),
        "target": TARGET,
        "meets_target": min(speedup, args.ddpm_steps * ddpm_eval / (args.ddim_steps * ddim_eval)) >= TARGET,
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
