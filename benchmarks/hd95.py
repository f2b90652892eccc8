"""HD95 speed: ``synthmed.metrics.hd95`` vs medpy's ``hd95`` (pooled definition) and
``synthmed.metrics.hd95_max`` vs MONAI's ``compute_hausdorff_distance(percentile=95)``
(directed-max definition) on BraTS-size masks.

Masks: ``[155, 240, 240]`` (D, H, W) boolean volumes at 1 × 1 × 1 mm holding a tumour-like
blob (a jagged ellipsoid, radii 12–35 voxels, at a random place in the brain area); the
prediction is the reference's blob moved by a few voxels with other radii and edge noise
(so the distances are not trivial). For each of ``--pairs`` pairs both implementations run
``--repeats`` times in the same process, interleaved; per-call times are the median. The
pooled values must agree with medpy's within 1e-6, the directed-max ones with MONAI's within
1e-4 relative (MONAI computes in float32). Target (headline ``ratio``): medpy time / synthmed
time >= 3; ``ratio_max_vs_monai`` (MONAI time / ``hd95_max`` time) is reported alongside.
Writes benchmarks/results/hd95.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from medpy.metric import binary as medpy
from monai.metrics import compute_hausdorff_distance
from _common import write_result

from synthmed.metrics import hd95, hd95_max

TARGET = 3.0
SHAPE = (155, 240, 240)


def blob(rng: np.random.Generator, centre: np.ndarray, radii: np.ndarray, noise: float = 0.08) -> np.ndarray:
    """A jagged ellipsoid in a BraTS-size volume (computed in its bounding box only)."""
    mask = np.zeros(SHAPE, bool)
    lo = np.maximum(0, np.floor(centre - radii * 1.3)).astype(int)
    hi = np.minimum(SHAPE, np.ceil(centre + radii * 1.3) + 1).astype(int)
    grid = np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi)), indexing="ij")
    r = np.sqrt(sum(((g - c) / rr) ** 2 for g, c, rr in zip(grid, centre, radii)))
    mask[tuple(slice(a, b) for a, b in zip(lo, hi))] = r + noise * rng.standard_normal(r.shape) < 1.0
    return mask


def pairs(n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        centre = rng.uniform([50, 70, 70], [105, 170, 170])
        radii = rng.uniform(12, 35, 3)
        ref = blob(rng, centre, radii)
        pred = blob(rng, centre + rng.uniform(-4, 4, 3), radii * rng.uniform(0.8, 1.2, 3), noise=0.15)
        out.append((pred, ref))
    return out


def monai_hd95(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...]) -> float:
    """MONAI's directed-max HD95 of two masks (one batch item, one foreground channel)."""
    yp, yr = (torch.from_numpy(m[None, None]).float() for m in (pred, ref))
    return float(compute_hausdorff_distance(yp, yr, include_background=True, percentile=95, spacing=list(spacing)))


def timed(fn, *args, **kwargs) -> tuple[float, float]:  # noqa: ANN001, ANN002, ANN003
    t0 = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - t0, float(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "hd95.json")
    args = parser.parse_args()
    ours_t, medpy_t, max_t, monai_t, cases = [], [], [], [], []
    spacing = (1.0, 1.0, 1.0)
    for pred, ref in pairs(args.pairs):
        ours_case, medpy_case, max_case, monai_case = [], [], [], []
        for _ in range(args.repeats):  # interleaved, so load changes hit all
            t, ours = timed(hd95, pred, ref, spacing)
            ours_case.append(t)
            t, theirs = timed(medpy.hd95, pred, ref, voxelspacing=spacing)
            medpy_case.append(t)
            t, ours_max = timed(hd95_max, pred, ref, spacing)
            max_case.append(t)
            t, monai = timed(monai_hd95, pred, ref, spacing)
            monai_case.append(t)
        ours_t += ours_case
        medpy_t += medpy_case
        max_t += max_case
        monai_t += monai_case
        cases.append({"ref_voxels": int(ref.sum()), "pred_voxels": int(pred.sum()), "hd95_synthmed": ours,
                      "hd95_medpy": theirs, "abs_diff": abs(ours - theirs),
                      "hd95_max_synthmed": ours_max, "hd95_max_monai": monai,
                      "rel_diff_max": abs(ours_max - monai) / max(monai, 1e-12),
                      "synthmed_s": round(statistics.median(ours_case), 4), "medpy_s": round(statistics.median(medpy_case), 4),
                      "synthmed_max_s": round(statistics.median(max_case), 4),
                      "monai_s": round(statistics.median(monai_case), 4)})
    ours_s, medpy_s = statistics.median(ours_t), statistics.median(medpy_t)
    max_s, monai_s = statistics.median(max_t), statistics.median(monai_t)
    ratio = medpy_s / ours_s
    max_diff = max(c["abs_diff"] for c in cases)
    max_rel_diff_max = max(c["rel_diff_max"] for c in cases)
    result = {
        "benchmark": "hd95", "shape": list(SHAPE), "spacing": list(spacing), "pairs": args.pairs,
        "repeats": args.repeats,
        "synthmed_median_s": round(ours_s, 4), "medpy_median_s": round(medpy_s, 4),
        "max_abs_diff": max_diff, "values_equal_within_1e-6": max_diff <= 1e-6,
        "synthmed_max_median_s": round(max_s, 4), "monai_median_s": round(monai_s, 4),
        "ratio_max_vs_monai": round(monai_s / max_s, 2), "max_rel_diff_max": max_rel_diff_max,
        "max_values_equal_within_1e-4": max_rel_diff_max <= 1e-4,
        "cases": cases, "ratio": round(ratio, 2), "target": TARGET,
        "meets_target": bool(ratio >= TARGET and max_diff <= 1e-6 and max_rel_diff_max <= 1e-4),
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
