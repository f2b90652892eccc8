"""A hand-made finished study for the report tests: real stores and made-up results, written by
fake stage functions (no training). The better a generator (:data:`GENERATORS`), the lower its
FD, the higher its Dice and the more it memorizes."""

from __future__ import annotations

import json
from pathlib import Path

from tiny_stores import make_store

from synthmed.data.store import Store
from synthmed.evaluate import audit, store_slice_consistency
from synthmed.study import LocalExecutor, build_spec, make_plan, write_results
from synthmed.study.stages import STAGE_FUNCTIONS

GENERATORS = {"ddpm": 0.7, "progan": 0.5, "stylegan2": 0.3}  # the Dice each reaches on synthetic data
PRETRAIN_GAIN = {"pretrained": 0.05, "pretrained-ssl": 0.03}  # Dice over scratch of each pre-training arm
SPEC = {"name": "fake", "data": {"phantom": {"cases": 3, "shape": [32, 48, 48]}, "size": 16},
        "generators": [{"name": g, "preset": "tiny", "steps": 5} for g in GENERATORS], "samples": 4,
        "segmenters": [{"name": "unet", "preset": "tiny", "steps": 3}],
        "train_sets": ["real", "synthetic", "synthetic+real"], "augmentation": [False], "seeds": [0, 1],
        "real_fractions": [0.5], "pretraining": {"subject_fractions": [0.5]}, "fidelity": ["domain"], "device": "cpu"}


def settings(stage, inputs) -> dict:  # noqa: ANN001
    """What an evaluation records of its run (see ``evaluate_run``), from the train stage's config."""
    train = json.loads((inputs["train"] / "stage.json").read_text())["config"]
    steps, aug = train["train_overrides"].get("steps"), train["train_overrides"]["aug"]
    pretrained = train["train_set"] in PRETRAIN_GAIN
    pretrain = {"kind": "store", "mode": "ssl"} if train["train_set"] == "pretrained-ssl" else {"kind": "run"}
    return {"test_store": str(inputs["prepare"] / "store"), "checkpoint": {"name": "best", "step": steps},
            "network": train["model"], "aug": aug, "seed": train["seed"], "model": {"network": train["model"]},
            "training": {"steps": steps, "aug": aug, "preset": train["preset"],
                         "pretrain": pretrain if pretrained else None},
            "train_set": {"kind": "real" if pretrained else train["train_set"],
                          "subject_fraction": train.get("subject_fraction", 1.0)}}


def fake_functions() -> dict:
    """Stage functions writing what the report reads, with made-up numbers (better generator: lower FD)."""

    def prepare(stage, spec, inputs, tmp, progress):  # noqa: ANN001
        make_store(tmp / "store", n=4, dims=stage.config.get("dims", 2))

    def sample(stage, spec, inputs, tmp, progress):  # noqa: ANN001
        dims = {data.label: data.dims for data in spec.data_sections()}[stage.labels["dataset"]]
        make_store(tmp / "store", n=4, seed=1, dims=dims)

    def fidelity(stage, spec, inputs, tmp, progress):  # noqa: ANN001
        d = GENERATORS[stage.labels["generator"]]
        result = {"fd": 10 * (1 - d), "kid_mean": 1 - d, "precision": d, "recall": d / 2, "ms_ssim": 0.2,
                  "ms_ssim_real": 0.3, "kid_std": 0.1, "n_real": 4}
        real, synthetic = Store.open(inputs["prepare"] / "store"), Store.open(inputs["sample"] / "store")
        if real.dims == 3:  # volumes: the slice consistency evaluate_fidelity adds, measured
            result["slice_consistency"] = store_slice_consistency(synthetic, real, real_indices=real.indices("test"))
        (tmp / "result.json").write_text(json.dumps(result))

    def memorization(stage, spec, inputs, tmp, progress):  # noqa: ANN001
        d = GENERATORS[stage.labels["generator"]]  # no threshold: the report takes the stage's
        summary = {"max": 0.9 + d / 10, "mean": 0.5, "median": 0.5, "fraction_above": d / 4, "n_above": round(d),
                   "histogram": {"edges": [-1.0, 0.0, 0.5, 1.0], "counts": [0, 2, 2]}}
        (tmp / "result.json").write_text(json.dumps(summary))
        if stage.labels["generator"] == "ddpm":  # one real audit: its closest pairs are drawn
            audit(Store.open(inputs["sample"] / "store"), Store.open(inputs["prepare"] / "store")).save(
                tmp / "memorization.json")

    def curves(stage, spec, inputs, tmp, progress):  # noqa: ANN001
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(str(tmp / "run" / "tensorboard")) as writer:
            for step in (1, 2, 3):
                writer.add_scalar("train/loss", 1.0 / step, step)
            writer.add_scalar("val/dice", 0.5, 3)

    def evaluate(stage, spec, inputs, tmp, progress):  # noqa: ANN001
        labels = stage.labels
        base = 0.8 if labels["train_set"] in ("real", *PRETRAIN_GAIN) else GENERATORS[labels["generator"]]
        if labels["train_set"] == "synthetic+real":
            base = (base + 0.8) / 2
        base -= 0.2 * (1 - labels["subject_fraction"]) - PRETRAIN_GAIN.get(labels["train_set"], 0.0)
        dice = base + 0.01 * labels["seed"]
        mean = {r: {"dice": dice, "hd95": 10 * (1 - dice)} for r in ("WT", "TC", "ET")}
        sd = {r: {"dice": 0.05, "hd95": 1.0} for r in ("WT", "TC", "ET")}
        (tmp / "result.json").write_text(json.dumps({"mean": mean, "sd": sd, **settings(stage, inputs)}))

    def nothing(stage, spec, inputs, tmp, progress):  # noqa: ANN001
        pass

    return {**{kind: nothing for kind in STAGE_FUNCTIONS}, "prepare": prepare, "sample": sample,
            "fidelity": fidelity, "memorization": memorization, "evaluate": evaluate, "fit": curves, "train": curves}


def run_fake_study(out: Path, spec: dict = SPEC) -> Path:
    """Run ``spec`` with :func:`fake_functions` into ``out`` and write its results table; returns ``out``."""
    plan = make_plan(build_spec(spec))
    LocalExecutor(progress=False, functions=fake_functions()).run(plan, out)
    write_results(plan, out)
    return out
