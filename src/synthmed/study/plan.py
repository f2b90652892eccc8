"""A study spec expanded into a DAG of content-hashed stages.

Each :class:`Stage` is keyed by the SHA-256 of its kind, its config and the keys of its
inputs, so changing one generator's config changes only that generator's stages and what
depends on them. A stage's artifacts live in ``STUDY/stages/<kind>-<key[:12]>/``; it is done
when that folder exists holding ``done.json`` (written last, the folder renamed into place).

Kinds, in dependency order: ``prepare`` → ``fit`` → ``sample`` → ``fidelity`` /
``memorization``; ``prepare`` (+ ``sample``) → ``train`` → ``evaluate``. Every ``domain``
``fidelity`` stage of a dataset also takes that dataset's one ``encoder`` stage (the domain
encoder, keyed by the ``prepare`` stage, its steps and seed), so all generators are scored
in one feature space however the stages are scheduled. The pre-training
curve adds ``train`` stages of train set ``pretrained`` whose input is a ``synthetic`` train
stage (its weights initialise the fine-tuning on real subjects).

Each dataset of the spec gets this whole grid (:func:`_add_dataset`), rooted at its own
``prepare`` stage and labelled with its name: datasets share no stage, and a dataset's stages
have the keys they would have in a study of that dataset alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthmed.study.spec import DataSpec, SegmenterSpec, StudySpec

KINDS = ("prepare", "encoder", "fit", "sample", "fidelity", "memorization", "train", "evaluate")
STAGES_DIR = "stages"
DONE_JSON = "done.json"
STAGE_JSON = "stage.json"


def stage_key(kind: str, config: dict[str, Any], inputs: tuple[str, ...]) -> str:
    """SHA-256 hex of the canonical JSON of ``kind``, ``config`` and the input keys."""
    text = json.dumps({"kind": kind, "config": config, "inputs": list(inputs)}, sort_keys=True,
                      separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Stage:
    """One unit of work: ``kind``, its ``config`` (hashed), the keys of its ``inputs`` and
    ``labels`` for the results table (dataset, generator, segmenter, … — not hashed)."""

    kind: str
    config: dict[str, Any]
    inputs: tuple[str, ...]
    labels: dict[str, Any] = field(default_factory=dict)
    key: str = ""

    @property
    def name(self) -> str:
        """Folder name: ``<kind>-<key[:12]>``."""
        return f"{self.kind}-{self.key[:12]}"


def _stage(kind: str, config: dict[str, Any], inputs: tuple[str, ...], labels: dict[str, Any]) -> Stage:
    return Stage(kind, config, inputs, labels, stage_key(kind, config, inputs))


@dataclass
class Plan:
    """The DAG: ``stages`` by key, in a dependency (topological) order."""

    spec: StudySpec
    stages: dict[str, Stage]

    def __len__(self) -> int:
        return len(self.stages)

    def add(self, stage: Stage) -> Stage:
        self.stages.setdefault(stage.key, stage)
        return self.stages[stage.key]

    def by_kind(self, kind: str) -> list[Stage]:
        return [s for s in self.stages.values() if s.kind == kind]

    def folder(self, out: str | Path, stage: Stage) -> Path:
        return Path(out) / STAGES_DIR / stage.name

    def is_done(self, out: str | Path, stage: Stage) -> bool:
        return (self.folder(out, stage) / DONE_JSON).is_file()

    def status(self, out: str | Path) -> dict[str, str]:
        """``{key: "done" | "pending"}``."""
        return {k: "done" if self.is_done(out, s) else "pending" for k, s in self.stages.items()}


def make_plan(spec: StudySpec) -> Plan:
    """Expand ``spec`` into its stages (pure: touches no file): each dataset's grid in turn."""
    plan = Plan(spec, {})
    for data in spec.data_sections():
        _add_dataset(plan, data)
    return plan


def _add_dataset(plan: Plan, data: DataSpec) -> None:
    """One dataset's stages: its ``prepare``, then everything that depends on it."""
    spec = plan.spec
    dataset = data.label
    prep_config = data.model_dump(mode="json", exclude={"name"})
    prep = plan.add(_stage("prepare", prep_config, (), {"dataset": dataset}))

    samples: list[tuple[str, Stage]] = []
    for label, gen in zip(spec.generator_labels(), spec.generators):
        train_overrides = dict(gen.train_overrides)
        if gen.steps is not None:
            train_overrides["steps"] = gen.steps
        fit = plan.add(_stage("fit", {"model": gen.name, "preset": gen.preset, "model_overrides": gen.model_overrides,
                                      "train_overrides": train_overrides, "seed": gen.seed},
                              (prep.key,), {"dataset": dataset, "generator": label}))
        sample = plan.add(_stage("sample", {"n": spec.samples, "sampler": gen.sampler, "steps": gen.sample_steps,
                                            "seed": gen.seed, "truncation": gen.truncation},
                                 (fit.key,), {"dataset": dataset, "generator": label}))
        samples.append((label, sample))
        for features in spec.fidelity:
            inputs = (prep.key, sample.key)
            if features == "domain":  # one per dataset: plan.add keeps the first of equal keys
                encoder = plan.add(_stage("encoder", {"steps": spec.encoder_steps, "seed": spec.encoder_seed},
                                          (prep.key,), {"dataset": dataset}))
                inputs = (prep.key, encoder.key, sample.key)
            plan.add(_stage("fidelity", {"features": features, "weights": spec.fidelity_weights.get(features),
                                         "real_split": "test"},
                            inputs, {"dataset": dataset, "generator": label, "features": features}))
        plan.add(_stage("memorization", {"threshold": spec.memorization_threshold}, (prep.key, sample.key),
                        {"dataset": dataset, "generator": label}))

    for seg_label, seg in zip(spec.segmenter_labels(), spec.segmenters):
        for aug in spec.augmentation:
            for seed in spec.seeds:
                _add_segmentation(plan, prep, samples, seg_label, seg, aug, seed)


def _add_segmentation(plan: Plan, prep: Stage, samples: list[tuple[str, Stage]], seg_label: str,
                      seg: SegmenterSpec, aug: bool, seed: int) -> None:
    """The ``train`` + ``evaluate`` stages of one segmenter, augmentation and seed: every train
    set (and real fraction), then the pre-training curve (scratch vs synthetic pre-trained, per
    subject fraction)."""
    spec = plan.spec
    dataset = prep.labels["dataset"]
    train_overrides = dict(seg.train_overrides, aug=aug)
    if seg.steps is not None:
        train_overrides["steps"] = seg.steps
    common = {"model": seg.name, "preset": seg.preset, "model_overrides": seg.model_overrides, "seed": seed}
    labels = {"dataset": dataset, "segmenter": seg_label, "augmentation": aug, "seed": seed}

    def add(train_set: str, inputs: tuple[str, ...], generator: str, real_fraction: float | None,
            subject_fraction: float = 1.0, overrides: dict[str, Any] = train_overrides) -> Stage:
        config = dict(common, train_overrides=overrides, train_set=train_set,
                      real_fraction=real_fraction if train_set == "synthetic+real" else None)
        if subject_fraction != 1.0:  # absent at 1: the curve's last point is the plain real-only run
            config["subject_fraction"] = subject_fraction
        stage_labels = dict(labels, generator=generator, train_set=train_set, real_fraction=real_fraction,
                            subject_fraction=subject_fraction)
        train = plan.add(_stage("train", config, inputs, stage_labels))
        plan.add(_stage("evaluate", {"split": "test"}, (train.key, prep.key), stage_labels))
        return train

    synthetic: dict[str, Stage] = {}
    for train_set in spec.train_sets:
        if train_set == "real":
            add("real", (prep.key,), "", 1.0)
        for gen_label, sample in samples:
            if train_set == "synthetic":
                synthetic[gen_label] = add("synthetic", (prep.key, sample.key), gen_label, 0.0)
            elif train_set == "synthetic+real":
                for fraction in list(spec.real_fractions) or [None]:
                    add("synthetic+real", (prep.key, sample.key), gen_label, fraction)
    curve = spec.pretraining
    finetune = dict(train_overrides, **({"steps": curve.finetune_steps} if curve.finetune_steps else {}))
    for fraction in curve.subject_fractions:
        add("real", (prep.key,), "", 1.0, fraction)
        for gen_label, sample in samples:
            pre = synthetic.get(gen_label) or add("synthetic", (prep.key, sample.key), gen_label, 0.0)
            synthetic[gen_label] = pre
            add("pretrained", (prep.key, pre.key), gen_label, 1.0, fraction, finetune)
