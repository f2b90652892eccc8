"""Modulated convolution: one call for the batch vs a per-sample loop, batch 16, same process.

A StyleGAN 2 layer (``--channels`` in and out, ``3×3``, ``--size``² maps, demodulated) at
batch 16, three ways: one grouped convolution (``groups=B``, the GPU path), the
input-modulation form (scale the input, one shared convolution, scale the output: the CPU
path) and a Python loop of ``B`` convolutions with per-sample kernels. Median of
``--repeats`` interleaved calls each. Target: grouped >= 3× faster than the loop (a GPU
property: on CPUs PyTorch's grouped convolution with per-sample kernels is slow, which is
why ``modulated_conv2d`` picks the input-modulation form there; both are reported).
Writes benchmarks/results/gan_modconv.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _common import write_result

from synthmed.generators.gan.layers import modulated_conv2d, modulated_conv2d_loop
from synthmed.training.fabric import resolve_device

TARGET = 3.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads on the CPU")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "gan_modconv.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(resolve_device(args.device))
    gen = torch.Generator(device="cpu").manual_seed(0)
    b, c, s = args.batch, args.channels, args.size
    x = torch.randn(b, c, s, s, generator=gen).to(device)
    weight = torch.randn(c, c, 3, 3, generator=gen).to(device) / (c * 9) ** 0.5
    styles = torch.randn(b, c, generator=gen).to(device) + 1
    ways = {"grouped": lambda: modulated_conv2d(x, weight, styles, padding=1, grouped=True),
            "input_modulation": lambda: modulated_conv2d(x, weight, styles, padding=1, grouped=False),
            "loop": lambda: modulated_conv2d_loop(x, weight, styles, padding=1)}
    ref = ways["loop"]()
    errors = {k: float((f() - ref).abs().max()) for k, f in ways.items() if k != "loop"}
    times: dict[str, list[float]] = {k: [] for k in ways}
    with torch.no_grad():
        for _ in range(args.repeats):
            for k, f in ways.items():
                t0 = time.perf_counter()
                f()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    speedup = med["loop"] / med["grouped"]
    result = {"benchmark": "gan_modconv", "layer": {"batch": b, "channels": c, "size": s, "kernel": 3},
              "device": str(device), "torch_threads": args.threads, "repeats": args.repeats,
              "median_s": {k: round(v, 5) for k, v in med.items()},
              "speedup_grouped_vs_loop": round(speedup, 2),
              "speedup_input_modulation_vs_loop": round(med["loop"] / med["input_modulation"], 2),
              "max_abs_error_vs_loop": errors, "target": TARGET, "meets_target": speedup >= TARGET}
    write_result(args.out, result)


if __name__ == "__main__":
    main()
