"""A study spec expanded into a DAG of content-hashed stages.

Each :class:`Stage` is keyed by the SHA-256 of its kind, its config and the keys of its
inputs, so changing one generator's config changes only that generator's stages and what
depends on them. A stage's artifacts live in ``STUDY/stages/<kind>-<key[:12]>/``; it is done
when that folder exists holding ``done.json`` (written last, the folder renamed into place).

Kinds, in dependency order: ``prepare`` → ``fit`` → ``sample`` → ``fidelity`` /
``memorization``; ``prepare`` (+ ``sample``) → ``train`` → ``evaluate``; ``prepare`` (+
``sample``) → ``classify`` → ``classify_eval``; ``prepare`` + ``fit`` (the progression's StyleGAN)
+ ``classify`` (its grade classifier, train set ``real``: the same stage as a ``classifiers:``
entry's) → ``progression_fit`` → ``progression_eval``. Every ``domain``
``fidelity`` stage of a dataset also takes that dataset's one ``encoder`` stage (the domain
encoder, keyed by the ``prepare`` stage, its steps and seed), so all generators are scored
in one feature space however the stages are scheduled. The pre-training
curve adds, per ``pretraining.modes`` arm, ``train`` stages of train set ``pretrained`` whose
input is a ``synthetic`` train stage (its weights initialise the fine-tuning on real subjects)
and of train set ``pretrained-ssl`` whose input is the ``sample`` stage (its images
pre-train the segmenter self-supervised, for the segmenter's steps, then it is fine-tuned on
the real subjects; the pre-training runs inside each such stage). Segmenters and classifiers
draw their train sets the same way (:func:`train_set_inputs`): ``real`` from the ``prepare``
stage, ``synthetic`` and ``synthetic+real`` per generator from its ``sample`` stage too.

Each dataset of the spec gets this whole grid (:func:`_add_dataset`), rooted at its own
``prepare`` stage and labelled with its name: datasets share no stage, and a dataset's stages
have the keys they would have in a study of that dataset alone.

**Keyed by content.** A ``prepare`` stage reading a dataset folder (``data.path``) has the
dataset's content hash in its config (:func:`~synthmed.data.fingerprint.source_hash`: the
files its layout reader would read; cached by size and modification time in
``STUDY/.source-hashes.json``), so a changed dataset (a label file edited, a case deleted)
gives a new ``prepare`` key and re-plans everything downstream. Each ``done.json`` records
the code that made it (:func:`code_version`); :meth:`Plan.older_code` lists finished stages
made by other code, which are kept, not rerun.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthmed.study.spec import PRETRAINED_TRAIN_SETS, ClassifierSpec, DataSpec, SegmenterSpec, StudySpec

STAGES_DIR = "stages"
DONE_JSON = "done.json"
STAGE_JSON = "stage.json"
#: The cache of source file digests in the study folder (see :func:`~synthmed.data.fingerprint.source_hash`).
SOURCE_CACHE = ".source-hashes.json"


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, str]:
    """``{"synthmed_version", "code"}``: the package version and the first 16 hex of the SHA-256
    of synthmed's own source files (``*.py`` and ``*.yaml`` of the package, by relative path),
    so a code change shows even when the version number did not move."""
    import synthmed

    root = Path(synthmed.__file__).resolve().parent
    digest = hashlib.sha256()
    for file in sorted(p for ext in ("*.py", "*.yaml") for p in root.rglob(ext)):
        digest.update(f"{file.relative_to(root).as_posix()}\0".encode() + file.read_bytes() + b"\0")
    return {"synthmed_version": synthmed.__version__, "code": digest.hexdigest()[:16]}


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
    problems: list[str] = field(default_factory=list)

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

    def older_code(self, out: str | Path) -> dict[str, str]:
        """Finished stages made by other synthmed code than this one: ``{key: their code}``
        (``"unknown"`` for a ``done.json`` from before code versions were recorded). They
        count as done; delete a stage's folder to rerun it."""
        current = code_version()["code"]
        older = {}
        for key, stage in self.stages.items():
            file = self.folder(out, stage) / DONE_JSON
            if not file.is_file():
                continue
            try:
                code = json.loads(file.read_text()).get("code", "unknown")
            except (OSError, ValueError, AttributeError):
                code = "unknown"
            if code != current:
                older[key] = str(code)
        return older

    def superseded_prepares(self, out: str | Path) -> list[str]:
        """Names of finished ``prepare`` stage folders in ``out`` whose config equals one of this
        plan's except for ``source_hash``: made from the same dataset before its files changed
        (or before ``prepare`` was keyed by its data)."""
        current = {key: s for key, s in self.stages.items() if s.kind == "prepare"}
        wanted = [{k: v for k, v in s.config.items() if k != "source_hash"} for s in current.values()]
        found = []
        root = Path(out) / STAGES_DIR
        for folder in sorted(root.glob("prepare-*")) if root.is_dir() else []:
            if not (folder / DONE_JSON).is_file() or any(folder.name == s.name for s in current.values()):
                continue
            try:
                config = json.loads((folder / STAGE_JSON).read_text())["config"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if {k: v for k, v in config.items() if k != "source_hash"} in wanted:
                found.append(folder.name)
        return found


def source_key(data: Any, out: str | Path | None) -> tuple[str | None, str | None]:
    """``(key, problem)``: the content hash of ``data.path``'s dataset (``None`` for the phantom,
    whose content its config already fixes), cached in ``out``'s :data:`SOURCE_CACHE` when
    ``out`` is given. A dataset that cannot be listed (missing, empty, …) gets the key
    ``unreadable``, and ``problem`` says why (its ``prepare`` stage will fail with that error)."""
    if data.path is None:
        return None, None
    from synthmed.data.fingerprint import source_hash
    from synthmed.errors import DataError

    try:
        return source_hash(data.path, data.layout, cache=Path(out) / SOURCE_CACHE if out is not None else None), None
    except DataError as exc:
        return "unreadable", str(exc)


def make_plan(spec: StudySpec, *, out: str | Path | None = None) -> Plan:
    """Expand ``spec`` into its stages. It reads no file but a ``data.path`` dataset's (to key
    ``prepare`` by its content, :func:`source_key`; with ``out``, through its cache there); a
    dataset that cannot be listed is noted in :attr:`Plan.problems`."""
    plan = Plan(spec, {})
    for data in spec.data_sections():
        _add_dataset(plan, data, out)
    return plan


def _add_dataset(plan: Plan, data: DataSpec, out: str | Path | None) -> None:
    """One dataset's stages: its ``prepare`` (keyed by the dataset's content, :func:`source_key`,
    cached in ``out``), then everything that depends on it."""
    spec = plan.spec
    dataset = data.label
    prep_config = data.model_dump(mode="json", exclude={"name"})
    if data.cross_sectional_phantom:  # keyed as before phantoms could be longitudinal
        del prep_config["phantom"]["longitudinal"]
    elif data.phantom is not None:  # a cohort: the cross-sectional fields are not its own
        for name in ("cases", "tumour_free_fraction"):
            del prep_config["phantom"][name]
    source, problem = source_key(data, out)
    if source is not None:
        prep_config["source_hash"] = source
    if problem is not None:
        plan.problems.append(problem)
    prep = plan.add(_stage("prepare", prep_config, (), {"dataset": dataset}))

    samples: list[tuple[str, Stage]] = []
    fits: dict[str, Stage] = {}
    for label, gen in zip(spec.generator_labels(), spec.generators):
        train_overrides = dict(gen.train_overrides)
        if gen.steps is not None:
            train_overrides["steps"] = gen.steps
        fit = plan.add(_stage("fit", {"model": gen.name, "preset": gen.preset, "model_overrides": gen.model_overrides,
                                      "train_overrides": train_overrides, "seed": gen.seed},
                              (prep.key,), {"dataset": dataset, "generator": label}))
        fits[label] = fit
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
    for clf_label, clf in zip(spec.classifier_labels(), spec.classifiers):
        _add_classifier(plan, prep, samples, clf_label, clf)
    if spec.progression is not None:
        _add_progression(plan, prep, fits)


def train_set_inputs(train_sets: Sequence[str], prep: Stage, samples: Sequence[tuple[str, Stage]],
                     real_fractions: Sequence[float | None] = (None,)
                     ) -> Iterator[tuple[str, tuple[str, ...], str, float | None]]:
    """``(train set, input keys, generator label, real fraction)`` of each training set of
    ``train_sets``: ``real`` once (the ``prepare`` stage; fraction 1), ``synthetic`` per generator
    (its ``sample`` stage too; fraction 0) and ``synthetic+real`` per generator and each of
    ``real_fractions`` (``None``: all of both stores)."""
    for train_set in train_sets:
        if train_set == "real":
            yield "real", (prep.key,), "", 1.0
        for gen_label, sample in samples:
            if train_set == "synthetic":
                yield "synthetic", (prep.key, sample.key), gen_label, 0.0
            elif train_set == "synthetic+real":
                for fraction in real_fractions:
                    yield "synthetic+real", (prep.key, sample.key), gen_label, fraction


def _add_segmentation(plan: Plan, prep: Stage, samples: list[tuple[str, Stage]], seg_label: str,
                      seg: SegmenterSpec, aug: bool, seed: int) -> None:
    """The ``train`` + ``evaluate`` stages of one segmenter, augmentation and seed: every train
    set (and real fraction), then the pre-training curve (scratch vs pre-trained on synthetic
    samples, supervised and/or self-supervised, per subject fraction)."""
    spec = plan.spec
    dataset = prep.labels["dataset"]
    train_overrides = dict(seg.train_overrides, aug=aug)
    if seg.steps is not None:
        train_overrides["steps"] = seg.steps
    common = {"model": seg.name, "preset": seg.preset, "model_overrides": seg.model_overrides, "seed": seed}
    labels = {"dataset": dataset, "segmenter": seg_label, "augmentation": aug, "seed": seed}

    def add(train_set: str, inputs: tuple[str, ...], generator: str, real_fraction: float | None,
            subject_fraction: float = 1.0, overrides: dict[str, Any] = train_overrides,
            extra: dict[str, Any] = {}) -> Stage:
        config = dict(common, train_overrides=overrides, train_set=train_set,
                      real_fraction=real_fraction if train_set == "synthetic+real" else None, **extra)
        if subject_fraction != 1.0:  # absent at 1: the curve's last point is the plain real-only run
            config["subject_fraction"] = subject_fraction
        stage_labels = dict(labels, generator=generator, train_set=train_set, real_fraction=real_fraction,
                            subject_fraction=subject_fraction)
        train = plan.add(_stage("train", config, inputs, stage_labels))
        plan.add(_stage("evaluate", {"split": "test"}, (train.key, prep.key), stage_labels))
        return train

    synthetic: dict[str, Stage] = {}
    for train_set, inputs, gen_label, fraction in train_set_inputs(spec.train_sets, prep, samples,
                                                                   list(spec.real_fractions) or [None]):
        train = add(train_set, inputs, gen_label, fraction)
        if train_set == "synthetic":
            synthetic[gen_label] = train
    curve = spec.pretraining
    finetune = dict(train_overrides, **({"steps": curve.finetune_steps} if curve.finetune_steps else {}))
    # ssl pre-trains as long as the supervised arm's synthetic run (None: the preset's steps)
    ssl = {"pretrain_steps": train_overrides.get("steps")}
    for fraction in curve.subject_fractions:
        add("real", (prep.key,), "", 1.0, fraction)
        for gen_label, sample in samples:
            if "supervised" in curve.modes:
                pre = synthetic.get(gen_label) or add("synthetic", (prep.key, sample.key), gen_label, 0.0)
                synthetic[gen_label] = pre
                add(PRETRAINED_TRAIN_SETS["supervised"], (prep.key, pre.key), gen_label, 1.0, fraction, finetune)
            if "ssl" in curve.modes:
                add(PRETRAINED_TRAIN_SETS["ssl"], (prep.key, sample.key), gen_label, 1.0, fraction, finetune, ssl)


def _add_classifier(plan: Plan, prep: Stage, samples: list[tuple[str, Stage]], label: str,
                    clf: ClassifierSpec) -> None:
    """The ``classify`` + ``classify_eval`` stages of one classifier: every train set (all of both
    stores for ``synthetic+real``) × seed × mode."""
    spec = plan.spec
    evaluation = {"split": "test", "eps": clf.eval_eps, "attack_steps": clf.eval_attack_steps, "n_boot": clf.n_boot,
                  "saliency": clf.saliency, "dilation": clf.dilation, "gallery_samples": clf.gallery_samples}
    for train_set, inputs, generator, fraction in train_set_inputs(clf.train_sets or spec.train_sets, prep, samples):
        for seed in clf.seeds or spec.seeds:
            for mode in clf.modes:
                train = _add_classify(plan, prep, inputs, label, clf, mode=mode, train_set=train_set, seed=seed,
                                      generator=generator, real_fraction=fraction)
                plan.add(_stage("classify_eval", evaluation, (train.key, prep.key), train.labels))


def _add_classify(plan: Plan, prep: Stage, inputs: tuple[str, ...], label: str, clf: ClassifierSpec, *, mode: str,
                  train_set: str, seed: int, generator: str = "", real_fraction: float | None = 1.0) -> Stage:
    """The ``classify`` stage of one classifier, mode, train set and seed (the one already planned when equal)."""
    config = {"task": clf.task, "model": clf.model, "preset": clf.preset, "model_overrides": clf.model_overrides,
              "train_overrides": clf.training_overrides(), "mode": mode, "train_set": train_set, "seed": seed}
    labels = {"dataset": prep.labels["dataset"], "classifier": label, "task": clf.task, "mode": mode,
              "generator": generator, "train_set": train_set, "seed": seed, "real_fraction": real_fraction,
              "subject_fraction": 1.0}
    return plan.add(_stage("classify", config, inputs, labels))


def _add_progression(plan: Plan, prep: Stage, fits: dict[str, Stage]) -> None:
    """The ``progression_fit`` (the training subjects projected with the generator's ``fit`` run; the
    grade classifier's ``classify`` run, trained on the real training subjects, recorded for the risk)
    and ``progression_eval`` stages of the spec's progression section."""
    spec = plan.spec
    prog = spec.progression
    assert prog is not None
    inputs = (prep.key, fits[prog.generator].key)
    labels: dict[str, Any] = {"dataset": prep.labels["dataset"], "generator": prog.generator, "seed": prog.seed}
    grade = spec.progression_classifier()
    if grade is not None:
        label, clf, mode, seed = grade
        classify = _add_classify(plan, prep, (prep.key,), label, clf, mode=mode, train_set="real", seed=seed)
        inputs += (classify.key,)
        labels.update(classifier=label, task="grade", mode=mode)
    fit = plan.add(_stage("progression_fit", {"projection": prog.projection()}, inputs, labels))
    plan.add(_stage("progression_eval", prog.evaluation(), (fit.key, prep.key), labels))
