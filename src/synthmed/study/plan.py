"""A study spec expanded into a DAG of content-hashed stages.

Each :class:`Stage` is keyed by the SHA-256 of its kind, its config and the keys of its
inputs, so changing one generator's config changes only that generator's stages and what
depends on them. A stage's artifacts live in ``STUDY/stages/<kind>-<key[:12]>/``; it is done
when that folder exists holding ``done.json`` (written last, the folder renamed into place).

Kinds, in dependency order: ``prepare`` → ``fit`` → ``sample`` → ``fidelity`` /
``memorization``; ``prepare`` (+ ``sample``) → ``train`` → ``evaluate``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthmed.study.spec import StudySpec

KINDS = ("prepare", "fit", "sample", "fidelity", "memorization", "train", "evaluate")
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
    """Expand ``spec`` into its stages (pure: touches no file)."""
    plan = Plan(spec, {})
    data = spec.data
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
            plan.add(_stage("fidelity", {"features": features, "weights": spec.fidelity_weights.get(features),
                                         "encoder_steps": spec.encoder_steps if features == "domain" else None},
                            (prep.key, sample.key), {"dataset": dataset, "generator": label, "features": features}))
        plan.add(_stage("memorization", {"threshold": spec.memorization_threshold}, (prep.key, sample.key),
                        {"dataset": dataset, "generator": label}))

    for seg_label, seg in zip(spec.segmenter_labels(), spec.segmenters):
        for train_set in spec.train_sets:
            if train_set == "real":
                sources: list[tuple[str, Stage | None, float | None]] = [("", None, 1.0)]
            elif train_set == "synthetic":
                sources = [(g, s, 0.0) for g, s in samples]
            else:
                fractions: list[float | None] = list(spec.real_fractions) or [None]
                sources = [(g, s, f) for g, s in samples for f in fractions]
            for gen_label, sample, fraction in sources:
                for aug in spec.augmentation:
                    for seed in spec.seeds:
                        train_overrides = dict(seg.train_overrides, aug=aug)
                        if seg.steps is not None:
                            train_overrides["steps"] = seg.steps
                        mixed = train_set == "synthetic+real"
                        config = {"model": seg.name, "preset": seg.preset, "model_overrides": seg.model_overrides,
                                  "train_overrides": train_overrides, "train_set": train_set, "seed": seed,
                                  "real_fraction": fraction if mixed else None}
                        inputs = (prep.key,) if sample is None else (prep.key, sample.key)
                        labels = {"dataset": dataset, "generator": gen_label, "segmenter": seg_label,
                                  "train_set": train_set, "augmentation": aug, "seed": seed, "real_fraction": fraction}
                        train = plan.add(_stage("train", config, inputs, labels))
                        plan.add(_stage("evaluate", {"split": "test"}, (train.key, prep.key), labels))
    return plan
