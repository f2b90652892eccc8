"""Does the pipeline give the reference study's kind of answer? A larger phantom study at the laptop presets.

Two studies run with :func:`synthmed.study.run_study` (resumable: a killed run continues; the
folders are kept under ``--work``):

* ``main``: 24 phantom patients (18 train + 6 test) at 32 px; all five generators (ddpm,
  progan, stylegan1, stylegan2, stylegan3) at the ``laptop`` preset and again at a third of
  its steps; a U-Net (``laptop``) on real, synthetic and synthetic+real data; 3 seeds.
* ``small``: 8 phantom patients (6 train), the five generators at the ``laptop`` preset, and
  memorization only: how memorization depends on the number of training patients.

Reported (``benchmarks/results/validity.json`` and ``validity.md``), beside the reference
study's findings (Akbar et al. 2024, Sci Data 11:259): real-only WT Dice; each generator's
relative WT Dice, synthetic-only and synthetic+real; the FD rank table; Spearman's ρ between FD
ranks and Dice ranks; memorization (share above the threshold, maximum correlation) with 6 and
18 training patients; relative Dice against training steps. Where our direction agrees with the
reference study's and where it does not is written out from the numbers, not tuned: the phantom
and the metrics are the project's defaults.

``--quick`` runs the same studies with every step count cut to a few (a check of the script, not
a result). Budget: about 90 minutes on a 2-core CPU for the full run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from _common import RESULTS, write_result

GENERATORS = ("ddpm", "progan", "stylegan1", "stylegan2", "stylegan3")
SHORT = 3  # the short budget is a third of the preset's steps
SEEDS = (0, 1, 2)
THRESHOLD = 0.95


def _preset_steps(name: str) -> int:
    if name == "ddpm":
        from synthmed.generators.config import PRESETS

        return PRESETS["laptop"].train.steps
    from synthmed.generators.gan.config import PRESETS as GAN

    return GAN[name]["laptop"].train.steps


def studies(quick: bool) -> dict[str, dict]:
    """The two study specs (dicts as a YAML file would hold them)."""
    cut = (lambda n: max(2, n // 120)) if quick else (lambda n: n)  # quick: 10 and 3 steps, distinct stages
    data = {"dims": 2, "size": 32, "test_fraction": 0.25}
    gens = [{"name": g, "preset": "laptop", "steps": cut(_preset_steps(g))} for g in GENERATORS]
    short = [{"name": g, "label": f"{g}@{max(1, _preset_steps(g) // SHORT)}", "preset": "laptop",
              "steps": cut(max(1, _preset_steps(g) // SHORT))} for g in GENERATORS]
    for g in gens + short:
        if g["name"] == "ddpm" and quick:
            g["sample_steps"] = 4
    common = {"samples": 32 if quick else 256, "fidelity": ["domain"], "encoder_steps": 20 if quick else 200,
              "memorization_threshold": THRESHOLD, "augmentation": [False], "executor": {"kind": "local", "workers": 2}}
    unet = {"name": "unet", "preset": "laptop", **({"steps": 10} if quick else {})}
    return {
        "main": {"name": "validity", "data": {"phantom": {"cases": 24, "shape": [48, 64, 64], "seed": 0}, **data},
                 "generators": gens + short, "segmenters": [unet], "train_sets": ["real", "synthetic", "synthetic+real"],
                 "seeds": list(SEEDS), **common},
        "small": {"name": "validity-small", "data": {"phantom": {"cases": 8, "shape": [48, 64, 64], "seed": 1}, **data},
                  "generators": gens, "segmenters": [], "train_sets": [], "seeds": [0], **common},
    }


def _get(d: dict | None, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def summarise(main: dict, small: dict) -> dict:
    """The reported numbers from the two studies' :func:`~synthmed.study.answers.study_answers`."""
    (_, m), = main.items()
    small_gens = next(iter(small.values()))["generators"] if small else {}
    full = {g: v for g, v in m["generators"].items() if "@" not in g}
    rows = {}
    for g in GENERATORS:
        v = full.get(g, {})
        short = next((s for name, s in m["generators"].items() if name.startswith(f"{g}@")), {})
        rows[g] = {
            "relative_synthetic": _get(v, "relative_synthetic"),
            "relative_mixed": _get(v, "relative_mixed", "all"),
            "fd": v.get("fd"), "fd_rank": v.get("fd_rank"),
            "relative_by_steps": {str(_preset_steps(g) // SHORT): _get(short, "relative_synthetic", "mean"),
                                  str(_preset_steps(g)): _get(v, "relative_synthetic", "mean")},
            "memorization": {"train_patients_18": {"share": v.get("memorized_share"), "max": v.get("max_correlation")},
                             "train_patients_6": {"share": _get(small_gens, g, "memorized_share"),
                                                  "max": _get(small_gens, g, "max_correlation")}},
        }
    return {"real_only_wt_dice": m["real_only"], "generators": rows, "spearman_fd_dice": m["spearman_fd_dice"]}


def findings(summary: dict) -> list[dict]:
    """Each of the reference study's findings beside ours, with whether the direction agrees."""
    gens = summary["generators"]
    rel = {g: _get(v, "relative_synthetic", "mean") for g, v in gens.items()}
    rel = {g: r for g, r in rel.items() if r is not None}
    out = []
    if rel:
        below = all(r < 1 for r in rel.values())
        out.append({"reference": "networks trained on synthetic images alone reach a large share, but less than all, "
                                 "of the Dice of real images",
                    "ours": ", ".join(f"{g} {r:.2f}" for g, r in rel.items()) + " (relative WT Dice)",
                    "agrees": below and max(rel.values()) >= 0.5})
    mem = {g: (_get(v, "memorization", "train_patients_6", "max"), _get(v, "memorization", "train_patients_18", "max"))
           for g, v in gens.items()}
    diff = mem.get("ddpm", (None, None))
    gans = [v for g, v in mem.items() if g != "ddpm" and v[0] is not None]
    if diff[0] is not None and gans:
        more = diff[0] >= max(v[0] for v in gans)
        out.append({"reference": "diffusion models memorize more than GANs, above all on small training sets",
                    "ours": f"max correlation with 6 / 18 training patients: ddpm {diff[0]:.3f} / {diff[1]:.3f}; "
                            + ", ".join(f"{g} {a:.3f} / {b:.3f}" for g, (a, b) in mem.items()
                                        if g != "ddpm" and a is not None and b is not None),
                    "agrees": more and diff[1] is not None and diff[0] >= diff[1]})
    rho = summary["spearman_fd_dice"]
    if rho is not None:
        out.append({"reference": "the generation metrics (FID, IS) are weak predictors of segmentation utility",
                    "ours": f"Spearman rho between FD ranks and Dice ranks {rho:.2f}",
                    "agrees": abs(rho) < 0.7})
    return out


def markdown(summary: dict, found: list[dict], seconds: float, quick: bool) -> str:
    real = summary["real_only_wt_dice"]
    lines = ["# Validity study (phantom, laptop presets)", "",
             ("**Quick mode: step counts cut to a few; these numbers check the script, not the pipeline.**\n"
              if quick else ""),
             f"Real-only WT Dice: {real['mean']:.3f} ± {real['sd'] or 0:.3f} (n = {real['n']}); run time {seconds / 60:.1f} min.",
             "", "| generator | relative WT Dice, synthetic | synthetic+real | FD | FD rank | "
                 "relative Dice by steps | max corr. (6 / 18 patients) |", "|---|---|---|---|---|---|---|"]

    def ms(s: dict | None) -> str:
        if not s or s.get("mean") is None:
            return "—"
        return f"{s['mean']:.3f}" + (f" ± {s['sd']:.3f}" if s.get("sd") is not None else "")

    for g, v in summary["generators"].items():
        steps = ", ".join(f"{k}: {'—' if x is None else f'{x:.2f}'}" for k, x in v["relative_by_steps"].items())
        m6, m18 = v["memorization"]["train_patients_6"]["max"], v["memorization"]["train_patients_18"]["max"]
        fd = "—" if v["fd"] is None else f"{v['fd']:.3g}"
        corr = " / ".join("—" if x is None else f"{x:.3f}" for x in (m6, m18))
        lines.append(f"| {g} | {ms(v['relative_synthetic'])} | {ms(v['relative_mixed'])} | {fd} | "
                     f"{v['fd_rank'] or '—'} | {steps} | {corr} |")
    rho = summary["spearman_fd_dice"]
    lines += ["", f"Spearman ρ (FD rank vs synthetic-only Dice rank): {'n/a' if rho is None else f'{rho:.2f}'}", "",
              "## Beside the reference study", "", "| reference study | ours | same direction |", "|---|---|---|"]
    lines += [f"| {f['reference']} | {f['ours']} | {'yes' if f['agrees'] else 'no'} |" for f in found]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=RESULTS / "validity-studies", help="study folders (kept)")
    parser.add_argument("--quick", action="store_true", help="cut every step count to a few (checks the script)")
    parser.add_argument("--out", type=Path, default=RESULTS / "validity.json")
    args = parser.parse_args()

    from synthmed.study import build_spec, run_study
    from synthmed.study.answers import study_answers

    start = time.perf_counter()
    answers = {}
    for name, values in studies(args.quick).items():
        folder = args.work / (f"{name}-quick" if args.quick else name)
        run_study(build_spec(values, f"validity:{name}"), folder, progress=False)
        answers[name] = study_answers(folder)
    seconds = time.perf_counter() - start
    summary = summarise(answers["main"], answers["small"])
    found = findings(summary)
    write_result(args.out, {"benchmark": "validity", "quick": args.quick, "seconds": round(seconds, 1),
                            "summary": summary, "findings": found,
                            "meets_target": {"within_90_min": seconds <= 90 * 60,
                                             "diffusion_relative_0.7": (_get(summary, "generators", "ddpm",
                                                                             "relative_synthetic", "mean") or 0) >= 0.7}})
    args.out.with_suffix(".md").write_text(markdown(summary, found, seconds, args.quick))


if __name__ == "__main__":
    main()
