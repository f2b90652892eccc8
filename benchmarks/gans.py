"""Throughput of the four GAN families at the ``small`` preset (five channels, ``--size``
64 by default; the preset is meant for 64-128 px).

For each family (and ``stylegan3-r``: StyleGAN 3 config R, the ``sg3_config`` model
override of the same preset): generated images/s of the generator (untrained, eval mode, truncation 1,
batch ``--batch``; median of ``--repeats`` after a warm-up) and, with ``--train``, training
images/s of one full iteration of the GAN task at the full resolution (D step + G step,
ADA where the preset has it; median of ``--train-steps`` after a warm-up). Informational
(no target): what a family costs relative to the others on this machine.
Writes benchmarks/results/gans.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _common import write_result

from synthmed.generators.gan.config import FAMILIES, PRESETS
from synthmed.generators.gan.task import GANTask, generate
from synthmed.training.fabric import FabricOptions, make_fabric, resolve_device
from synthmed.training.loop import StepContext
from synthmed.training.seeding import StepRandom


def timed(fn, repeats: int) -> float:  # noqa: ANN001
    """Median seconds of ``fn()`` over ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


#: ``(name, family, model overrides)`` of every configuration timed.
CONFIGS: list[tuple[str, str, dict[str, str]]] = [(family, family, {}) for family in FAMILIES] + [
    ("stylegan3-r", "stylegan3", {"sg3_config": "r"})]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--train", action="store_true", help="also time training iterations (slow on a CPU)")
    parser.add_argument("--train-steps", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads on the CPU")
    parser.add_argument("--only", nargs="+", choices=[name for name, _, _ in CONFIGS], help="time only these")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "gans.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    fabric = make_fabric(FabricOptions(device=device))
    results = {}
    for name, family, overrides in CONFIGS:
        if args.only and name not in args.only:
            continue
        preset = PRESETS[family]["small"]
        config = preset.model.model_copy(update={"resolution": args.size, **overrides})
        train = preset.train.model_copy(update={"batch": args.batch, "growth_steps": 0})
        task = GANTask(config, train, seed=0)
        task.setup(fabric)
        z = torch.randn(args.batch, config.z_dim, device=fabric.device)
        g = task.ema.module.eval()

        def sample() -> None:
            with torch.no_grad():
                generate(g, config, z)

        gen_s = timed(sample, args.repeats)
        results[name] = {"generate_images_per_s": round(args.batch / gen_s, 3)}
        if not args.train:
            print(name, results[name], flush=True)
            continue
        images = torch.rand(args.batch, config.image_channels, config.resolution, config.resolution, device=fabric.device)
        labels = torch.randint(0, 4, (args.batch, config.resolution, config.resolution), device=fabric.device,
                               dtype=torch.uint8)
        steps = iter(range(10**6))

        def step() -> None:
            s = next(steps) + 1  # not step 0: the lazy regularisers run at their usual rate
            task.training_step((images, labels), StepContext(s, StepRandom(0, s, device=fabric.device), fabric))

        train_s = timed(step, args.train_steps)
        results[name]["train_images_per_s"] = round(args.batch / train_s, 3)
        print(name, results[name], flush=True)
    result = {"benchmark": "gans", "preset": "small", "image": [5, args.size, args.size], "batch": args.batch,
              "device": str(fabric.device), "torch_threads": torch.get_num_threads(), "families": results,
              "target": None, "meets_target": None,
              "note": "informational throughput; untrained networks (cost does not depend on the weights)"}
    write_result(args.out, result)


if __name__ == "__main__":
    main()
