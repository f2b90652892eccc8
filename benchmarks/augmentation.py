"""Cost of the training augmentation (rotation ±30°, scaling, gamma, blur, noise — every
augmentation forced on, the worst case) on the device, against one training step of the
U-Net it feeds.

For each device (CPU always; CUDA when a GPU is present) and set-up (:data:`SETUPS`; CUDA:
2D batch 32 × 4 × 128², 3D batch 2 × 4 × 128³, ``small`` U-Net; CPU: 2D 16 × 4 × 64², 3D
2 × 4 × 32³, ``tiny`` U-Net) it times ``augment`` and a full training step (augmentation +
forward + backward + AdamW), median of ``--repeats`` after warm-up,
synchronising CUDA around each call. Reports milliseconds per batch and the augmentation's
share of the step. No target: the number is reported (``gpu_present`` says whether CUDA was
measured). Writes benchmarks/results/augmentation.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _common import write_result

from synthmed.segmentation import SegmentationTask, augment, resolve_configs
from synthmed.segmentation.augment import AugmentOptions
from synthmed.training import FabricOptions, StepContext, StepRandom, make_fabric

ALWAYS = AugmentOptions(p_affine=1.0, p_gamma=1.0, p_blur=1.0, p_noise=1.0)
#: (batch, spatial shape, U-Net preset) per device and dims: the CPU set-up is smaller so the script stays short.
SETUPS = {
    "cuda": {"2d": (32, (128, 128), "small"), "3d": (2, (128, 128, 128), "small")},
    "cpu": {"2d": (16, (64, 64), "tiny"), "3d": (2, (32, 32, 32), "tiny")},
}


def _time(fn, device: torch.device, repeats: int) -> float:  # noqa: ANN001
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def measure(device: str, dims: str, repeats: int) -> dict:
    batch, spatial, preset = SETUPS[device][dims]
    fabric = make_fabric(FabricOptions(device=device, precision="32"))
    dev = fabric.device
    gen = torch.Generator().manual_seed(0)
    images = torch.rand((batch, 4, *spatial), generator=gen).to(dev)
    labels = torch.randint(0, 4, (batch, *spatial), generator=gen).to(torch.uint8).to(dev)
    config, tc = resolve_configs("unet", preset, {"spatial_dims": len(spatial), "image_shape": spatial,
                                                   "deep_supervision": False}, {"batch": batch, "aug": True})
    task = SegmentationTask(config, tc, seed=0, augment_options=ALWAYS)
    task.setup(fabric)
    step = [0]

    def aug() -> None:
        step[0] += 1
        augment(images, labels, StepRandom(0, step[0], device=dev), ALWAYS)

    def train_step() -> None:
        step[0] += 1
        task.training_step((images, labels), StepContext(step[0], StepRandom(0, step[0], device=dev), fabric))

    aug_ms = _time(aug, dev, repeats)
    step_ms = _time(train_step, dev, max(2, repeats // 2))
    return {"device": str(dev), "unet": f"{preset} preset {list(config.filters)}", "batch": batch, "image": [4, *spatial], "augment_ms_per_batch": round(aug_ms, 2),
            "train_step_ms_with_augment": round(step_ms, 2), "augment_share_of_step": round(aug_ms / step_ms, 3),
            "augment_ms_per_sample": round(aug_ms / batch, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads on the CPU (1 resists oversubscription on a shared machine)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "augmentation.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gpu = torch.cuda.is_available()
    results = {}
    for device in (["cuda"] if gpu else []) + ["cpu"]:
        for dims in SETUPS[device]:
            results[f"{device}_{dims}"] = measure(device, dims, args.repeats)
    result = {
        "benchmark": "augmentation", "gpu_present": gpu,
        "gpu": torch.cuda.get_device_name(0) if gpu else None,
        "note": None if gpu else "no GPU present: only the CPU cost was measured",
        "augmentations": "rotation ±30°, scale 0.9-1.1, gamma 0.7-1.5, blur σ 0.5-1, noise σ ≤ 0.1, all applied",
        "torch_threads": torch.get_num_threads(),
        "repeats": args.repeats, "results": results, "target": None, "meets_target": None,
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
