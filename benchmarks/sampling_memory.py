"""Sampling memory: peak resident memory of `generator sample` for N and 10·N images.

Each measurement is a fresh process running the sampling API (load a saved ``tiny``
generator, stream batches into a synthetic store) and reporting its peak RSS
(``ru_maxrss``). The generator is untrained (memory does not depend on the weights); DDIM
with few steps keeps the run short. Target: the 10·N run's peak <= 1.10 × the N run's.
Writes benchmarks/results/sampling_memory.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from _common import write_result

from synthmed.generators.config import PRESETS
from synthmed.generators.diffusion.model import DiffusionGenerator
from synthmed.generators.diffusion.networks import build_unet

TARGET = 1.10
CHILD = """
import resource, sys
from synthmed.generators.api import sample_run
sample_run(sys.argv[1], sys.argv[2], n=int(sys.argv[3]), batch=int(sys.argv[4]), steps=int(sys.argv[5]),
           device="cpu", progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_mib(saved: Path, out: Path, n: int, batch: int, steps: int) -> float:
    result = subprocess.run([sys.executable, "-c", CHILD, str(saved), str(out), str(n), str(batch), str(steps)],
                            check=True, capture_output=True, text=True)
    return int(result.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sampling_memory.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = PRESETS["tiny"].model.model_copy(update={"image_shape": (args.size, args.size)})
        gen = DiffusionGenerator(config)
        torch.manual_seed(0)
        gen.network = build_unet(config).eval()
        gen.data = {"sample_shape": [4, args.size, args.size], "channels": ["t1", "t1ce", "t2", "flair"],
                    "spacing": [1.0, 1.0, 1.0]}
        saved = gen.save(tmp / "generator")
        small = peak_rss_mib(saved, tmp / "small", args.n, args.batch, args.steps)
        large = peak_rss_mib(saved, tmp / "large", 10 * args.n, args.batch, args.steps)
    ratio = large / small
    result = {
        "benchmark": "sampling_memory",
        "model": "ddpm tiny preset (DDIM)", "image": [4, args.size, args.size], "batch": args.batch,
        "steps": args.steps, "device": "cpu",
        "n": [args.n, 10 * args.n], "peak_rss_mib": [round(small, 1), round(large, 1)],
        "ratio": round(ratio, 3), "target": TARGET, "meets_target": ratio <= TARGET,
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
