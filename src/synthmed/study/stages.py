"""What each stage kind does: one function per kind, calling the public APIs.

A stage function gets the stage, the spec, the finished folders of its inputs (by kind) and
a temporary folder ``tmp`` to fill; the executor renames ``tmp`` into place when it returns.
Outputs: ``prepare`` → ``store/``; ``encoder`` → ``encoder/`` (the domain encoder's run);
``fit`` → ``run/``; ``sample`` → ``store/``; ``train`` and ``classify`` → ``run/``; ``fidelity``,
``memorization``, ``evaluate`` → ``result.json``; ``classify_eval`` → ``result.json`` (clean and
robust metrics, and the saliency scores), ``eps.png`` (AUROC against ε) and ``saliency.png``
(the saliency gallery); ``progression_fit`` → ``run/`` (the progression run: the training
subjects' latents); ``progression_eval`` → ``run/`` (a copy of the fit's run holding the test
baselines' projections and the end-to-end baseline classifier, so the finished fit stage is
never written to), ``eval/`` (the evaluation's JSON, per-subject CSV and gallery),
``result.json`` (that JSON, its files relative to the stage folder) and ``gallery.png``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from synthmed.study.plan import Stage
from synthmed.study.spec import PRETRAINED_TRAIN_SETS, DataSpec, StudySpec

RESULT_JSON = "result.json"
#: the saliency gallery of a ``classify_eval`` stage.
SALIENCY_PNG = "saliency.png"
#: the baseline | predicted | true follow-up gallery of a ``progression_eval`` stage.
PROGRESSION_PNG = "gallery.png"

StageFn = Callable[[Stage, StudySpec, dict[str, Path], Path, bool], None]


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, default=str) + "\n")


def run_prepare(stage: Stage, spec: StudySpec, inputs: dict[str, Path], tmp: Path, progress: bool) -> None:
    from synthmed.config import PrepareConfig, build_config
    from synthmed.data.prepare import prepare

    # the stage's own dataset: its config is the data section plus, for a folder, its content hash
    data = DataSpec(**{k: v for k, v in stage.config.items() if k != "source_hash"})
    src = Path(str(data.path)) if data.path is not None else tmp / "phantom"
    if data.phantom is not None and data.phantom.longitudinal is not None:
        from synthmed.data.phantom import write_longitudinal_phantom

        # its longitudinal.csv is a manifest with subject_id and months: prepare keeps one slice per visit
        write_longitudinal_phantom(src, **data.phantom.longitudinal.model_dump(), shape=data.phantom.shape,
                                   seed=data.phantom.seed, progress=progress)
    elif data.phantom is not None:
        from synthmed.data.phantom import write_phantom

        write_phantom(src, **data.phantom.model_dump(exclude={"longitudinal"}), progress=progress)
    config = build_config(PrepareConfig, "data", dims=data.dims, size=data.size, test_fraction=data.test_fraction,
                          seed=data.seed, layout=data.layout, min_brain_fraction=data.min_brain_fraction)
    prepare(src, tmp / "store", config, progress=progress)


def run_fit(stage: Stage, spec: StudySpec, inputs: dict[str, Path], tmp: Path, progress: bool) -> None:
    from synthmed.generators.api import train_generator
    from synthmed.training.fabric import FabricOptions

    c = stage.config
    train_generator(inputs["prepare"] / "store", tmp / "run", model=c["model"], preset=c["preset"],
                    model_overrides=c["model_overrides"], train_overrides=c["train_overrides"], seed=c["seed"],
                    fabric=FabricOptions(device=spec.device), progress=progress)


def run_sample(stage: Stage, spec: StudySpec, inputs: dict[str, Path], tmp: Path, progress: bool) -> None:
    from synthmed.generators.api import sample_run

    c = stage.config
    sample_run(inputs["fit"] / "run", tmp / "store", n=c["n"], sampler=c["sampler"], steps=c["steps"], seed=c["seed"],
               truncation=c["truncation"], device=spec.device, progress=progress)


def _encoder_config(inputs: dict[str, Path]) -> Any:
    """The domain encoder config of a finished ``encoder`` stage (from its ``stage.json``)."""
    from synthmed.features import DomainEncoderConfig
    from synthmed.study.plan import STAGE_JSON

    c = json.loads((inputs["encoder"] / STAGE_JSON).read_text())["config"]
    return DomainEncoderConfig(steps=c["steps"], seed=c["seed"])


def run_encoder(stage: Stage, spec: StudySpec, inputs: dict[str, Path], tmp: Path, progress: bool) -> None:
    from synthmed.data.store import Store
    from synthmed.features import DomainEncoderConfig, train_domain_encoder

    c = stage.config
    train_domain_encoder(Store.open(inputs["prepare"] / "store"), run_dir=tmp / "encoder",
                         config=DomainEncoderConfig(steps=c["steps"], seed=c["seed"]), device=spec.device,
                         progress=progress)


def run_fidelity(stage: Stage, spec: StudySpec, inputs: dict[str, Path], tmp: Path, progress: bool) -> None:
    from synthmed.evaluate import evaluate_fidelity

    c = stage.config
    domain = c["features"] == "domain"  # loads the dataset's encoder stage: every generator in one feature space
    result = evaluate_fidelity(inputs["prepare"] / "store", inputs["sample"] / "store", features=c["features"],
                               weights=inputs["encoder"] / "encoder" if domain else c["weights"],
                               real_split=c["real_split"], encoder_config=_encoder_config(inputs) if domain else None,
                               device=spec.device, progress=progress)
    _write_json(tmp / RESULT_JSON, result)


def run_memorization(stage: Stage, spec: StudySpec, inputs: dict[str, Path], tmp: Path, progress: bool) -> None:
    from synthmed.data.store import Store
    from synthmed.evaluate import audit

    result = audit(Store.open(inputs["sample"] / "store"), Store.open(inputs["prepare"] / "store"),
                   threshold=stage.config["threshold"])
    result.save(tmp / "memorization.json")
    _write_json(tmp / RESULT_JSON, result.summary())


def train_stores(train_set: str, inputs: dict[str, Path]) -> list[Path]:
    """The stores a ``train`` or ``classify`` stage trains on: ``real``, ``pretrained`` and
    ``pretrained-ssl`` (fine-tuned) the ``prepare`` stage's, ``synthetic`` the ``sample`` stage's,
    ``synthetic+real`` both."""
    real = inputs["prepare"] / "store"
    if train_set in ("real", *PRETRAINED_TRAIN_SETS.values()):
        return [real]
    synthetic = inputs["sample"] / "store"
    return [synthetic] if train_set == "synthetic" else [real, synthetic]


def run_train(stage: Stage, spec: StudySpec, inputs: dict[str, Path], tmp: Path, progress: bool) -> None:
    from synthmed.segmentation import train_segmenter
    from synthmed.training.fabric import FabricOptions

    c = stage.config
    stores = train_stores(c["train_set"], inputs)
    pretrain, mode, pretrain_steps = None, "supervised", None
    if c["train_set"] == PRETRAINED_TRAIN_SETS["supervised"]:  # the synthetic train stage's run
        pretrain = inputs["train"] / "run"
    elif c["train_set"] == PRETRAINED_TRAIN_SETS["ssl"]:  # the samples' images, self-supervised
        from synthmed.segmentation import PRESETS

        pretrain, mode = inputs["sample"] / "store", "ssl"
        pretrain_steps = c["pretrain_steps"] or PRESETS[c["preset"]].train.steps
    train_segmenter(tmp / "run", stores, model=c["model"], preset=c["preset"], real_fraction=c["real_fraction"],
                    subject_fraction=c.get("subject_fraction", 1.0), pretrain=pretrain, pretrain_mode=mode,
                    pretrain_steps=pretrain_steps, model_overrides=c["model_overrides"],
                    train_overrides=c["train_overrides"], seed=c["seed"], fabric=FabricOptions(device=spec.device),
                    progress=progress)


def run_evaluate(stage: Stage, spec: StudySpec, inputs: dict[str, Path], tmp: Path, progress: bool) -> None:
    from synthmed.segmentation import evaluate_run

    result = evaluate_run(inputs["train"] / "run", inputs["prepare"] / "store", device=spec.device, write=False)
    _write_json(tmp / RESULT_JSON, result)


def run_classify(stage: Stage, spec: StudySpec, inputs: dict[str, Path], tmp: Path, progress: bool) -> None:
    from synthmed.classify.api import train_classifier
    from synthmed.training.fabric import FabricOptions

    c = stage.config
    train_classifier(tmp / "run", train_stores(c["train_set"], inputs), task=c["task"], model=c["model"],
                     mode=c["mode"], preset=c["preset"], model_overrides=c["model_overrides"],
                     train_overrides=c["train_overrides"], seed=c["seed"], fabric=FabricOptions(device=spec.device),
                     progress=progress)


def run_classify_eval(stage: Stage, spec: StudySpec, inputs: dict[str, Path], tmp: Path, progress: bool) -> None:
    """Clean and robust metrics over the ε sweep, in the norm the run was trained with (both BN
    routes for ``dual-bn``), then the saliency scores and gallery on the tumour-bearing test
    samples; without any, ``saliency`` is ``None`` and ``saliency_skipped`` says why."""
    from synthmed.classify.interpret import explain
    from synthmed.classify.robustness import eps_figure, evaluate_classifier
    from synthmed.training.run import read_run

    c = stage.config
    run, store = inputs["classify"] / "run", inputs["prepare"] / "store"
    info = read_run(run)  # the attacks and bootstrap are seeded by the run's seed
    result = evaluate_classifier(run, store, eps_sweep=c["eps"], norm=info["training"]["norm"],
                                 attack_steps=c["attack_steps"], n_boot=c["n_boot"], seed=info["seed"],
                                 device=spec.device, write=False, progress=progress)
    eps_figure(result, tmp / "eps.png")
    result["saliency"], result["saliency_skipped"] = None, None
    if c["saliency"] is not None:
        # every task's outputs are all 0 exactly on tumour-free samples
        if not any(result["clean"][name]["positives"] > 0 for name in result["labels"]):
            result["saliency_skipped"] = "no test sample has a tumour: saliency is scored against the tumour mask"
        else:
            saliency = explain([run], store, method=c["saliency"], dilation=c["dilation"],
                               gallery_samples=c["gallery_samples"], n_boot=c["n_boot"],
                               seed=info["seed"], out=tmp / "saliency", device=spec.device,
                               progress=progress)
            (tmp / "saliency.json").unlink()  # the same result is in result.json
            result["saliency"] = dict(saliency, gallery=SALIENCY_PNG)
    _write_json(tmp / RESULT_JSON, result)


def run_progression_fit(stage: Stage, spec: StudySpec, inputs: dict[str, Path], tmp: Path, progress: bool) -> None:
    """The training subjects projected with the ``fit`` stage's StyleGAN; the ``classify`` stage's grade
    classifier (when the stage has one) recorded for the risk."""
    from synthmed.config import build_config
    from synthmed.progression.api import fit_progression
    from synthmed.progression.config import ProjectionConfig

    config = build_config(ProjectionConfig, "progression", **stage.config["projection"])
    classifier = inputs["classify"] / "run" if "classify" in inputs else None
    fit_progression(inputs["prepare"] / "store", tmp / "run", inputs["fit"] / "run", config=config,
                    classifier=classifier, device=spec.device, progress=progress)


def run_progression_eval(stage: Stage, spec: StudySpec, inputs: dict[str, Path], tmp: Path, progress: bool) -> None:
    """The test subjects' risk and predicted follow-ups (:func:`~synthmed.progression.evaluate.evaluate_progression`),
    on a copy of the fit's run (its projections and baseline classifier are this stage's)."""
    import shutil

    from synthmed.progression.evaluate import evaluate_progression

    run = tmp / "run"
    shutil.copytree(inputs["progression_fit"] / "run", run)
    result = evaluate_progression(run, inputs["prepare"] / "store", out=tmp / "eval", device=spec.device,
                                  progress=progress, **stage.config)
    files = {name: Path(path) for name, path in result["files"].items()}
    shutil.copyfile(files["gallery"], tmp / PROGRESSION_PNG)
    result["files"] = {name: path.relative_to(tmp).as_posix() for name, path in files.items()}
    result["run"] = "run"  # the temporary folder's path is gone once the stage is in place
    result["gallery"] = PROGRESSION_PNG
    _write_json(tmp / RESULT_JSON, result)


STAGE_FUNCTIONS: dict[str, StageFn] = {
    "prepare": run_prepare,
    "encoder": run_encoder,
    "fit": run_fit,
    "sample": run_sample,
    "fidelity": run_fidelity,
    "memorization": run_memorization,
    "train": run_train,
    "evaluate": run_evaluate,
    "classify": run_classify,
    "classify_eval": run_classify_eval,
    "progression_fit": run_progression_fit,
    "progression_eval": run_progression_eval,
}
