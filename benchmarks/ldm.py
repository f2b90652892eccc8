"""3D latent diffusion (``--model ldm``) on the phantom at 64³: autoencoder reconstruction, sampling cost
against pixel-space 3D diffusion, slice consistency, and self-supervised pre-training on synthetic volumes.

**Cohort.** ``data phantom`` with 24 cases (seed 0, a 78 × 120 × 120 grid), ``data prepare --dims 3
--size 64 --test-fraction 0.25``: 64³ volumes of four channels in [0, 1] with their masks, split by
subject into 18 train and 6 test subjects. Then, through the ``synthmed`` commands:

1. **Reconstruction.** ``generator train STORE RUN --model ldm --preset laptop64`` trains both stages
   on the train split (the autoencoder never sees a test subject). Each held-out test volume goes
   through the autoencoder (encode: the ``kl`` posterior mean or the ``vq`` pre-quantization latent;
   decode: quantized for ``vq``, then the joint encoding's decoding: images clamped to [0, 1], the
   mask to valid labels). **PSNR**: per volume, ``10 · log10(1 / MSE)`` (data range 1: images in
   [0, 1]) with the MSE over every voxel of the four *image* channels (the mask channels are not
   part of it; background included), then the mean over volumes. Also reported: the same PSNR over
   the brain only (voxels where any channel of the real volume is above 0) and the train split's.
   **Mask**: WT (and TC, ET) Dice per volume of the decoded label against the real one (both empty:
   1), mean over volumes. Targets: PSNR >= 28 dB, WT Dice >= 0.9.
2. **Sampling cost of one 64³ volume**, the latent model against pixel-space 3D DDPM (the ``ddpm``
   generator) at the same output size and the same number of denoiser steps: DDIM with 10 network
   evaluations in both (few steps favour the pixel baseline: the latent model's decoding is a fixed
   cost), float32, ``--threads`` (1) torch threads, one volume per batch. The pixel baseline's U-Net has the latent model's widths, residual blocks, heads
   and attention levels (the ``laptop64`` diffusion part) with the joint encoding's 7 channels in and
   out instead of the 8 latent ones (weights untrained: a network evaluation costs the same whatever
   its weights); a second pixel baseline drops the attention (at 64³ the lowest level has 16³ = 4,096
   positions, and attention over them is the costliest part of the U-Net): the strongest pixel
   baseline of these widths. Each model runs in a fresh child process (one after the other; the
   latent model before and after the pixel ones, the slower of its two runs counted): load the
   generator, read the resident memory, sample once with 1 step (warm-up), then time one sampling
   of the volume with all the steps (wall time, decoding included; the median network evaluation
   too). **Peak memory** = the child's peak resident set size (``VmHWM``, which sees every
   allocation, torch's included) minus its resident size after loading, before the first sample:
   the working memory of sampling, as a GPU's peak allocation would count it; the total peaks are
   reported beside. Targets: time >= 5× and memory >= 3× lower than *each* pixel baseline.
3. **Slice consistency.** ``generator sample RUN SYN --n 16 --sampler ddim --steps 25``: the mean
   Pearson correlation of adjacent axial slices (per channel, pooled over every slice pair of every
   volume, a pair with a flat slice left out, then the mean over channels) of the synthetic volumes
   against the real test volumes' (the train volumes' beside): target ``|synthetic / real − 1| <=
   0.10``; beside it the ratio of the mean absolute inter-slice difference (blurred volumes are
   slice-consistent too, and change less from slice to slice). Computed by
   :func:`synthmed.evaluate.store_slice_consistency` (conventions: ``synthmed.metrics.slice_consistency``).
4. **SSL pre-training on synthetic volumes.** For seeds 0, 1, 2: ``segment train`` (U-Net ``tiny``,
   ``--steps 150 --batch 1 --lr 3e-3 --no-aug``, validating every 50 steps, the best checkpoint
   kept) on a scarce share of the real training subjects (``--subject-fraction 0.2`` of the 14 left
   after the 4 validation subjects: 3 subjects), once from scratch and once with ``--pretrain SYN
   --pretrain-mode ssl --pretrain-steps 60`` (the pretext loss levels off by then), the same seed in
   both (the same subjects, validation split and data order); ``segment eval --test STORE`` on the 6
   test subjects. The budget was set on the scratch arm alone: at 150 steps a scratch run has just
   learnt the tumour (measured: validation WT Dice about 0.1 up to step 125, 0.85 at 150; the
   preset's 60 steps with augmentation learn nothing). Reported: WT (TC, ET) Dice of both arms per
   seed, the paired gain per seed and its mean ± sd (sample sd, n − 1). Target: a WT gain > 0 in
   every seed (so its mean too).

``--quick`` checks the script in a few minutes (6 cases at 32³, every step count cut: its numbers
mean nothing). Writes ``benchmarks/results/ldm.json`` and ``ldm.md`` (``ldm-quick.*`` with
``--quick``; ``--out`` elsewhere) and keeps its work under ``--work`` (default
``benchmarks/results/ldm-work``; a second run reuses what is finished; ``--fresh`` starts again).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import RESULTS, synthmed, time_stage, write_result

FULL: dict[str, Any] = {
    "cases": 24, "grid": (78, 120, 120), "size": 64, "seed": 0, "test_fraction": 0.25,
    "preset": "laptop64", "autoencoder_steps": None, "diffusion_steps": None,
    "sample_steps": 10, "synthetic": 16, "synthetic_steps": 25,
    "segmenter": {"preset": "tiny", "steps": 150, "batch": 1, "lr": 3e-3, "validate_every": 50, "pretrain_steps": 60,
                  "subject_fraction": 0.2}, "seeds": (0, 1, 2),
}
QUICK: dict[str, Any] = {
    "cases": 6, "grid": (48, 64, 64), "size": 32, "seed": 0, "test_fraction": 0.34,
    "preset": "laptop64", "autoencoder_steps": 4, "diffusion_steps": 4,
    "sample_steps": 2, "synthetic": 4, "synthetic_steps": 2,
    "segmenter": {"preset": "tiny", "steps": 4, "batch": 2, "lr": 3e-3, "validate_every": 2, "pretrain_steps": 4,
                  "subject_fraction": 0.5}, "seeds": (0, 1, 2),
}
TARGETS = {"psnr_db": 28.0, "wt_dice": 0.9, "time_ratio": 5.0, "memory_ratio": 3.0, "slice_correlation_gap": 0.10,
           "ssl_wt_gain": 0.0}

# One model's sampling cost in a fresh process: argv = generator folder, steps, threads.
CHILD = r"""
import json, sys, time
import torch
torch.set_num_threads(int(sys.argv[3]))
from synthmed.generators.api import load_generator

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024

gen = load_generator(sys.argv[1], device="cpu")
steps = int(sys.argv[2])
loaded = status("VmRSS")
list(gen.sample(1, seed=1, batch_size=1, sampler="ddim", steps=1))  # warm-up
marks = [time.perf_counter()]
images, labels = next(gen.sample(1, seed=0, batch_size=1, sampler="ddim", steps=steps,
                                 on_step=lambda m, k: marks.append(time.perf_counter())))
end = time.perf_counter()
evals = [b - a for a, b in zip(marks, marks[1:])]
print(json.dumps({"wall_s": end - marks[0], "evals": len(evals), "median_eval_s": sorted(evals)[len(evals) // 2],
                  "decode_s": end - marks[-1], "loaded_rss_mib": loaded, "peak_rss_mib": status("VmHWM"),
                  "shape": list(images.shape), "torch_threads": torch.get_num_threads()}))
"""


def resumed(command: list[str], run: Path, threads: int, retries: list[str]) -> None:
    """A training command, with ``--resume`` when ``run`` exists; a failed run is resumed once (runs resume
    exactly where they stopped), the failure noted in ``retries``."""
    for attempt in range(2):
        resume = ["--resume"] if (run / "run.json").is_file() else []
        try:
            synthmed(*command, *resume, threads=threads)
            return
        except subprocess.CalledProcessError as error:
            if attempt:
                raise
            retries.append(f"{run.name}: exit {error.returncode}, resumed")
            print(f"{run}: exit {error.returncode}; resuming once", file=sys.stderr)


def make_cohort(work: Path, s: dict[str, Any]) -> Path:
    """The phantom cases and their 3D store (made once under ``work``)."""
    store = work / "store"
    if not store.exists():
        synthmed("data", "phantom", str(work / "phantom"), "--cases", str(s["cases"]), "--shape",
                 *map(str, s["grid"]), "--seed", str(s["seed"]), "--workers", "1", "--overwrite", threads=s["threads"])
        synthmed("data", "prepare", str(work / "phantom"), str(store), "--dims", "3", "--size", str(s["size"]),
                 "--test-fraction", str(s["test_fraction"]), "--workers", "1", threads=s["threads"])
    return store


def train_ldm(work: Path, store: Path, s: dict[str, Any]) -> Path:
    """``generator train --model ldm`` (resumed if unfinished; a finished run returns at once)."""
    run = work / "ldm"
    steps = [*(["--autoencoder-steps", str(s["autoencoder_steps"])] if s["autoencoder_steps"] else []),
             *(["--steps", str(s["diffusion_steps"])] if s["diffusion_steps"] else [])]
    resumed(["generator", "train", str(store), str(run), "--model", "ldm", "--preset", s["preset"], *steps,
             "--device", "cpu", "--no-progress"], run, s["threads"], s["retries"])
    return run


def psnr_db(x: np.ndarray, ref: np.ndarray) -> float:
    """``10 · log10(1 / MSE)`` of images in [0, 1] (data range 1), MSE over every element."""
    mse = float(np.mean((x.astype(np.float64) - ref.astype(np.float64)) ** 2))
    return 10 * np.log10(1 / max(mse, 1e-10))


def reconstruction(run: Path, store_path: Path) -> dict[str, Any]:
    """PSNR and region Dice of each split's volumes through the run's autoencoder (module docstring)."""
    import torch

    from synthmed.data.store import Store
    from synthmed.generators.latent import load_autoencoder
    from synthmed.metrics.overlap import dice, region_masks

    store, ae = Store.open(store_path), load_autoencoder(run, device="cpu")
    out: dict[str, Any] = {"autoencoder_step": ae.step, "kind": ae.kind, "latent_shape": list(ae.latent_shape)}
    for split in ("test", "train"):
        rows = []
        for i in store.indices(split):
            images, labels = store.read([int(i)])
            with torch.no_grad():
                rec, rec_labels = ae.decode(ae.encode(images, labels))
            rec, rec_labels = rec.numpy(), rec_labels.numpy()
            brain = np.broadcast_to((images > 0).any(axis=1, keepdims=True), images.shape)
            pred, ref = region_masks(rec_labels[0]), region_masks(labels[0])
            rows.append({"psnr": psnr_db(rec, images), "psnr_brain": psnr_db(rec[brain], images[brain]),
                         **{region: dice(pred[region], ref[region]) for region in ("WT", "TC", "ET")}})
        out[split] = {"volumes": len(rows), **{k: float(np.mean([r[k] for r in rows])) for k in rows[0]},
                      "per_volume": {k: [round(r[k], 4) for r in rows] for k in rows[0]}}
    return out


def pixel_baselines(work: Path, run: Path) -> dict[str, Path]:
    """The pixel-space ``ddpm`` generators of the latent model's U-Net widths at the store's size (untrained,
    seeded), with and without its attention, saved under ``work`` (made once)."""
    import torch

    from synthmed.generators.api import load_generator
    from synthmed.generators.diffusion.model import DiffusionGenerator
    from synthmed.generators.diffusion.networks import build_unet

    ldm = load_generator(run, device="cpu")
    data = ldm.data
    config = ldm.config.diffusion.model_copy(update={  # type: ignore[attr-defined]
        "image_shape": tuple(data["sample_shape"][1:]), "spatial_dims": int(data["dims"]),
        "image_channels": int(data["sample_shape"][0])})
    out = {}
    for name, attention in (("pixel", tuple(config.attention_levels)),
                            ("pixel_no_attention", (False,) * len(config.channels))):
        folder = work / f"{name}-ddpm"
        if not folder.is_dir():
            variant = config.model_copy(update={"attention_levels": attention})
            gen = DiffusionGenerator(variant)
            torch.manual_seed(0)
            gen.network = build_unet(variant).eval()
            gen.data = {k: data[k] for k in ("sample_shape", "channels", "spacing", "dims")}
            gen.save(folder)
        out[name] = folder
    return out


def sampling_child(folder: Path, steps: int, threads: int) -> dict[str, Any]:
    """:data:`CHILD`'s measurement of one generator in a fresh process."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    result = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(steps), str(threads)], check=True,
                            capture_output=True, text=True, env=env)
    found = json.loads(result.stdout.strip().splitlines()[-1])
    found["sampling_mib"] = found["peak_rss_mib"] - found["loaded_rss_mib"]
    return found


def parameters(folder: Path) -> dict[str, int]:
    """Parameter counts of a generator's denoiser (and autoencoder, for ``ldm``)."""
    from synthmed.generators.api import load_generator

    gen = load_generator(folder, device="cpu")
    out = {"denoiser": sum(p.numel() for p in gen.network.parameters())}  # type: ignore[attr-defined]
    codec = getattr(gen, "codec", None)
    if codec is not None and hasattr(codec, "autoencoder"):
        net = codec.autoencoder.network.net
        out["autoencoder_decoder"] = sum(p.numel() for p in net.decoder.parameters())
    return out


def sampling_cost(work: Path, run: Path, steps: int, threads: int) -> dict[str, Any]:
    """Time and working memory of sampling one volume: the latent model against both pixel baselines."""
    pixels = pixel_baselines(work, run)
    latent_first = sampling_child(run, steps, threads)
    measured = {name: sampling_child(folder, steps, threads) for name, folder in pixels.items()}
    latent_last = sampling_child(run, steps, threads)
    latent = max((latent_first, latent_last), key=lambda m: m["wall_s"])
    ratios, meets = {}, {}
    for name, m in measured.items():
        ratios[name] = {"time": m["wall_s"] / latent["wall_s"], "memory": m["sampling_mib"] / latent["sampling_mib"],
                        "median_eval": m["median_eval_s"] / latent["median_eval_s"],
                        "total_peak_rss": m["peak_rss_mib"] / latent["peak_rss_mib"]}
        meets[name] = {"time": ratios[name]["time"] >= TARGETS["time_ratio"],
                       "memory": ratios[name]["memory"] >= TARGETS["memory_ratio"]}
    sizes = {"latent": parameters(run), **{name: parameters(folder) for name, folder in pixels.items()}}
    return {"sampler": "ddim", "steps": steps, "torch_threads": threads, "precision": "32", "batch": 1,
            "latent": latent, "latent_runs": [latent_first, latent_last], **measured, "parameters": sizes,
            "ratios": ratios, "meets": meets}


def sample_synthetic(work: Path, run: Path, s: dict[str, Any]) -> Path:
    """``generator sample``: the synthetic volumes of the slice consistency and the SSL pre-training (made once)."""
    synthetic = work / "synthetic"
    if not synthetic.exists():
        synthmed("generator", "sample", str(run), str(synthetic), "--n", str(s["synthetic"]), "--batch", "4",
                 "--sampler", "ddim", "--steps", str(s["synthetic_steps"]), "--device", "cpu", "--no-progress",
                 threads=s["threads"])
    return synthetic


def slice_consistency(store_path: Path, synthetic_path: Path) -> dict[str, Any]:
    """The synthetic volumes' slice consistency against the real test (headline) and train volumes':
    :func:`~synthmed.evaluate.store_slice_consistency` of each split, and its headline gap."""
    from synthmed.data.store import Store
    from synthmed.evaluate import store_slice_consistency
    from synthmed.metrics.slice_consistency import headline_gap

    real, syn = Store.open(store_path), Store.open(synthetic_path)
    out: dict[str, Any] = {}
    for split in ("test", "train"):
        out[split] = store_slice_consistency(syn, real, real_indices=real.indices(split))
        out[f"gap_{split}"] = headline_gap(out[split])
    return out


def segment(work: Path, store: Path, synthetic: Path, seed: int, arm: str, s: dict[str, Any]) -> dict[str, Any]:
    """One fine-tuning run (``scratch`` or ``ssl``) and its evaluation on the test subjects (resumed if unfinished)."""
    seg = s["segmenter"]
    run = work / "segment" / f"{arm}-seed{seed}"
    evaluation = run / "eval" / f"{store.name}.json"
    if not evaluation.is_file():
        pretrain = ["--pretrain", str(synthetic), "--pretrain-mode", "ssl", "--pretrain-steps",
                    str(seg["pretrain_steps"])] if arm == "ssl" else []
        resumed(["segment", "train", str(run), "--train", str(store), "--preset", seg["preset"], "--steps",
                 str(seg["steps"]), "--batch", str(seg["batch"]), "--lr", str(seg["lr"]), "--no-aug",
                 "--validate-every", str(seg["validate_every"]),
                 "--checkpoint-every", str(seg["validate_every"]), "--subject-fraction", str(seg["subject_fraction"]),
                 "--seed", str(seed), *pretrain, "--device", "cpu", "--no-progress"], run, s["threads"], s["retries"])
        synthmed("segment", "eval", str(run), "--test", str(store), "--batch", "1", "--device", "cpu", "--overwrite",
                 threads=s["threads"])
    result = json.loads(evaluation.read_text())
    stores = result["train_set"]["stores"]
    return {"dice": {r: result["mean"][r]["dice"] for r in ("WT", "TC", "ET")}, "test_cases": result["n"],
            "train_subjects": stores[0]["train_subjects"], "val_subjects": stores[0]["val_subjects"],
            "checkpoint": result["checkpoint"]}


def ssl_gain(work: Path, store: Path, synthetic: Path, s: dict[str, Any]) -> dict[str, Any]:
    """Both arms per seed and the paired gains (ssl − scratch) with their mean ± sd."""
    per_seed = {}
    for seed in s["seeds"]:
        per_seed[str(seed)] = {arm: segment(work, store, synthetic, seed, arm, s) for arm in ("scratch", "ssl")}
    gains: dict[str, Any] = {}
    for region in ("WT", "TC", "ET"):
        values = [per_seed[k]["ssl"]["dice"][region] - per_seed[k]["scratch"]["dice"][region] for k in per_seed]
        gains[region] = {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None,
                         "per_seed": [round(v, 4) for v in values], "positive_seeds": int(sum(v > 0 for v in values))}
    return {"per_seed": per_seed, "gain": gains, "seeds": list(s["seeds"]), **s["segmenter"]}


def markdown(result: dict[str, Any]) -> str:
    """A short summary of ``result`` (one line per target)."""
    rec, cost, sc, ssl = result["reconstruction"], result["sampling"], result["slice_consistency"], result["ssl"]
    mark = {True: "met", False: "**missed**"}
    meets = result["meets"]
    lines = [f"# ldm benchmark{' (quick: numbers mean nothing)' if result['quick'] else ''}", "",
             f"{result['settings']['cases']} phantom cases at {result['settings']['size']}³, preset "
             f"{result['settings']['preset']}; {result['wall_seconds'] / 60:.1f} min in all.", "",
             "| target | measured | verdict |", "|---|---|---|",
             f"| test PSNR >= {TARGETS['psnr_db']} dB | {rec['test']['psnr']:.2f} dB (brain only "
             f"{rec['test']['psnr_brain']:.2f}; train {rec['train']['psnr']:.2f}) | {mark[meets['psnr']]} |",
             f"| test WT Dice after the round trip >= {TARGETS['wt_dice']} | {rec['test']['WT']:.3f} (TC "
             f"{rec['test']['TC']:.3f}, ET {rec['test']['ET']:.3f}) | {mark[meets['wt_dice']]} |"]
    for name in ("pixel", "pixel_no_attention"):
        r = cost["ratios"][name]
        lines.append(f"| sampling time vs {name} >= {TARGETS['time_ratio']}x lower | {r['time']:.1f}x "
                     f"({cost[name]['wall_s']:.1f} s vs {cost['latent']['wall_s']:.1f} s, {cost['steps']} DDIM steps) | "
                     f"{mark[cost['meets'][name]['time']]} |")
        lines.append(f"| sampling memory vs {name} >= {TARGETS['memory_ratio']}x lower | {r['memory']:.1f}x "
                     f"({cost[name]['sampling_mib']:.0f} MiB vs {cost['latent']['sampling_mib']:.0f} MiB above the "
                     f"loaded process; total peaks {r['total_peak_rss']:.2f}x) | {mark[cost['meets'][name]['memory']]} |")
    test, train = sc["test"], sc["train"]
    lines.append(f"| slice correlation within {TARGETS['slice_correlation_gap']:.0%} of real | synthetic "
                 f"{test['correlation']:.3f} vs real test {test['correlation_real']:.3f} (gap "
                 f"{sc['gap_test']:.1%}; train {train['correlation_real']:.3f}; inter-slice difference "
                 f"{test['difference_ratio']:.2f}x real's) | {mark[meets['slice_consistency']]} |")
    wt = ssl["gain"]["WT"]
    sd = "n/a" if wt["sd"] is None else f"{wt['sd']:.3f}"
    per = ", ".join(f"{v:+.3f}" for v in wt["per_seed"])
    lines.append(f"| SSL on synthetic then {ssl['subject_fraction']} of the real subjects beats scratch (WT Dice) | "
                 f"gain {wt['mean']:+.3f} ± {sd} (per seed {per}) | {mark[meets['ssl_gain']]} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=None, help="cohort, runs and outputs (kept; default "
                        "benchmarks/results/ldm-work, -quick with --quick)")
    parser.add_argument("--quick", action="store_true", help="a tiny cohort and a few steps (checks the script)")
    parser.add_argument("--fresh", action="store_true", help="delete --work first")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every command and measurement "
                        "(1 resists oversubscription on a shared machine)")
    parser.add_argument("--out", type=Path, default=None, help="the JSON (the Markdown summary beside it)")
    args = parser.parse_args()
    s = {**(QUICK if args.quick else FULL), "threads": args.threads, "retries": []}
    suffix = "-quick" if args.quick else ""
    work = args.work or RESULTS / f"ldm-work{suffix}"
    out = args.out or RESULTS / f"ldm{suffix}.json"
    if args.fresh:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    store = time_stage(seconds, "cohort", make_cohort, work, s)
    run = time_stage(seconds, "train_ldm", train_ldm, work, store, s)
    rec = time_stage(seconds, "reconstruction", reconstruction, run, store)
    cost = time_stage(seconds, "sampling_cost", sampling_cost, work, run, s["sample_steps"], args.threads)
    synthetic = time_stage(seconds, "sample_synthetic", sample_synthetic, work, run, s)
    sc = time_stage(seconds, "slice_consistency", slice_consistency, store, synthetic)
    ssl = time_stage(seconds, "ssl", ssl_gain, work, store, synthetic, s)
    result: dict[str, Any] = {
        "benchmark": "ldm", "quick": args.quick, "settings": {k: v for k, v in s.items() if k not in ("segmenter", "threads", "retries")},
        "torch_threads": args.threads, "reconstruction": rec, "sampling": cost, "slice_consistency": sc, "ssl": ssl,
        "targets": TARGETS,
        "meets": {"psnr": rec["test"]["psnr"] >= TARGETS["psnr_db"], "wt_dice": rec["test"]["WT"] >= TARGETS["wt_dice"],
                  "sampling_time": all(m["time"] for m in cost["meets"].values()),
                  "sampling_memory": all(m["memory"] for m in cost["meets"].values()),
                  "slice_consistency": sc["gap_test"] <= TARGETS["slice_correlation_gap"],
                  "ssl_gain": ssl["gain"]["WT"]["mean"] > TARGETS["ssl_wt_gain"]
                  and ssl["gain"]["WT"]["positive_seeds"] == len(ssl["seeds"])},
        "retries": s["retries"], "seconds": seconds, "wall_seconds": round(time.perf_counter() - started, 1),
    }
    write_result(out, result)
    summary = markdown(result)
    out.with_suffix(".md").write_text(summary)
    print(summary)


if __name__ == "__main__":
    main()
