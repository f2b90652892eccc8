"""Projection throughput: a batch of images projected together vs the same images one at a time, same process.

An untrained StyleGAN 2 of a preset (default ``laptop``: 32 px, 32-d styles, <= 32 feature
maps; 4 image channels + the mask), its noise strengths set to 0.01 so the noise maps take
part, projects ``--images`` images it generated from random latents and noise maps: once as
one batch (:func:`synthmed.progression.projector.project_images` with all of them), once one
image per call, ``--steps`` steps each (the paper's schedule, pixel L2 and the noise
regulariser). images/s = images / wall time of each way (the process's CPU time too: on a
shared machine it is less disturbed by other processes). Also reported: the largest difference
between the two ways' latents (a batch must project each image as it would alone) and the
reconstruction PSNR. Target: batched >= 5× the images/s of one at a time.
Writes benchmarks/results/projection.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _common import write_result

from synthmed.generators.gan.config import PRESETS
from synthmed.generators.gan.model import StyleGAN2
from synthmed.progression.config import ProjectionConfig
from synthmed.progression.projector import project_images
from synthmed.progression.synthesis import StyleSynthesis
from synthmed.training.fabric import resolve_device
from synthmed.training.seeding import seeded_init

TARGET = 5.0


def synthesis_of(preset: str, resolution: int, device: str) -> StyleSynthesis:
    """An untrained StyleGAN 2 of ``preset`` at ``resolution`` with noise strengths 0.01."""
    config = PRESETS["stylegan2"][preset].model.model_copy(update={"image_channels": 4, "resolution": resolution})
    gen = StyleGAN2(config)
    with seeded_init(0):
        net = StyleGAN2.build_network(config)
    for module in net.modules():
        if type(module).__name__ == "NoiseInjection":
            module.weight.data.fill_(0.01)
    gen.network, gen.device = net.to(device).eval(), torch.device(device)
    return StyleSynthesis(gen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="laptop", choices=["tiny", "laptop", "small", "paper"])
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--images", type=int, default=16, help="images, and the batch of the batched way")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads on the CPU")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "projection.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    synthesis = synthesis_of(args.preset, args.resolution, device)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        w = synthesis.network.mapping(torch.randn(args.images, synthesis.z_dim, generator=g).to(device))
        maps = [torch.randn(args.images, 1, *s, generator=g).to(device) for s in synthesis.noise_shapes]
        targets = synthesis.synthesize(w[:, None], maps)
    config = ProjectionConfig(steps=args.steps, batch=args.images)
    w_avg, w_std = synthesis.w_stats(config.w_avg_samples, config.seed)
    keys = list(range(args.images))

    def sync() -> None:
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()

    project_images(synthesis, targets[:1], [0], config.model_copy(update={"steps": 2}), w_avg=w_avg, w_std=w_std)
    sync()  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    batched = project_images(synthesis, targets, keys, config, w_avg=w_avg, w_std=w_std)
    sync()
    t1, c1 = time.perf_counter(), time.process_time()
    alone = [project_images(synthesis, targets[i : i + 1], [k], config, w_avg=w_avg, w_std=w_std) for i, k in enumerate(keys)]
    sync()
    t2, c2 = time.perf_counter(), time.process_time()
    batched_rate, alone_rate = args.images / (t1 - t0), args.images / (t2 - t1)
    speedup = batched_rate / alone_rate
    result = {"benchmark": "projection", "device": device, "torch_threads": args.threads,
              "network": {"family": "stylegan2", "preset": args.preset, "resolution": args.resolution,
                          "num_ws": synthesis.num_ws, "w_dim": synthesis.w_dim,
                          "noise_inputs": len(synthesis.noise_shapes)},
              "images": args.images, "steps": args.steps,
              "batched_images_per_s": round(batched_rate, 3), "one_at_a_time_images_per_s": round(alone_rate, 3),
              "batched_s": round(t1 - t0, 2), "one_at_a_time_s": round(t2 - t1, 2),
              "speedup": round(speedup, 2),
              "cpu_time_s": {"batched": round(c1 - c0, 2), "one_at_a_time": round(c2 - c1, 2),
                             "speedup": round((c2 - c1) / max(c1 - c0, 1e-9), 2)},
              "max_abs_w_difference": float((batched.w - torch.cat([a.w for a in alone])).abs().max()),
              "psnr_db_mean": round(float(batched.psnr.mean()), 2),
              "target": TARGET, "meets_target": speedup >= TARGET}
    write_result(args.out, result)


if __name__ == "__main__":
    main()
