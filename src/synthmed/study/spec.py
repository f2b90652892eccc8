"""The study file: one YAML naming the whole grid (datasets × generators × segmenters × train
sets × augmentation × seeds × real fractions, optionally classifiers: tasks × modes × train
sets × seeds, and disease progression: one StyleGAN and grade classifier on a longitudinal
dataset), validated into :class:`StudySpec`. The data come as one ``data`` section or a
``datasets`` list of them (each named); the grid is repeated per dataset.

Every invalid value becomes one :class:`~synthmed.errors.SynthmedError` naming the field
(``generators.0.name``) and the allowed values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from synthmed.classify.names import ModeName, NetworkName, SaliencyMethod, TaskName
from synthmed.config import Config, LayoutName, PhantomShape, build_config
from synthmed.errors import SynthmedError
from synthmed.study.executor_registry import executor_names
from synthmed.study.kinds import KINDS

Preset = Literal["tiny", "laptop", "small", "paper"]
TrainSet = Literal["real", "synthetic", "synthetic+real"]
PretrainMode = Literal["supervised", "ssl"]
#: the train set of each arm of the pre-training curve (``pretraining.modes``): ``pretrained``
#: fine-tunes the ``synthetic`` train stage's run (supervised on the samples' images and masks),
#: ``pretrained-ssl`` pre-trains self-supervised on the samples' images (no mask), then fine-tunes.
PRETRAINED_TRAIN_SETS: dict[str, str] = {"supervised": "pretrained", "ssl": "pretrained-ssl"}
FeatureSpace = Literal["domain", "radimagenet", "inception"]


class LongitudinalSpec(Config):
    """A longitudinal phantom cohort (``synthmed data phantom --longitudinal``): ``subjects`` followed
    over ``visits`` visits ``interval_months`` apart, each keeping its anatomy while its tumour grows."""

    subjects: int = Field(8, ge=2, description="number of subjects")
    visits: int = Field(3, ge=2, description="visits per subject (the first at month 0)")
    interval_months: float = Field(12.0, gt=0.0, description="months between visits")
    onset_fraction: float = Field(0.0, ge=0.0, le=1.0, description="share of subjects whose first visit is "
                                  "tumour-free")
    fast_fraction: float = Field(0.4, ge=0.0, le=1.0, description="share of fast progressors")


class PhantomSpec(Config):
    """The built-in phantom as the study's dataset (see ``synthmed data phantom``): ``cases``
    cross-sectional cases, or with ``longitudinal`` a cohort of subjects with several visits each."""

    cases: int = Field(10, ge=2, description="number of phantom cases (not with longitudinal)")
    shape: PhantomShape = Field((155, 240, 240), description="(D, H, W) voxels")
    seed: int = Field(0, ge=0, description="phantom seed")
    tumour_free_fraction: float = Field(0.0, ge=0.0, le=1.0, description="share of cases without a tumour "
                                        "(not with longitudinal: see its onset_fraction)")
    longitudinal: LongitudinalSpec | None = Field(None, description="a longitudinal cohort instead of cases")

    @property
    def tumour_free_share(self) -> float:
        """The share of tumour-free cases: ``tumour_free_fraction``, or a cohort's ``onset_fraction``."""
        return self.tumour_free_fraction if self.longitudinal is None else self.longitudinal.onset_fraction

    @model_validator(mode="after")
    def _cohort_or_cases(self) -> PhantomSpec:
        if self.longitudinal is not None:
            for name, instead in (("cases", "longitudinal.subjects"), ("tumour_free_fraction",
                                                                       "longitudinal.onset_fraction")):
                if name in self.model_fields_set:
                    raise ValueError(f"{name} is not used by a longitudinal phantom: give {instead}")
        return self


class DataSpec(Config):
    """Where the real patients come from and how they become a store."""

    name: str | None = Field(None, description="dataset name in the results (default: the folder name or 'phantom')")
    path: str | None = Field(None, description="dataset folder (relative to the study file)")
    layout: LayoutName = Field("auto", description="dataset layout, or auto-detect")
    phantom: PhantomSpec | None = Field(None, description="use the built-in phantom instead of a path")
    dims: Literal[2, 3] = Field(2, description="2 = axial slices, 3 = volumes")
    size: int = Field(128, ge=8, le=1024, description="side of the prepared samples")
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="share of cases held out as real test patients")
    seed: int = Field(0, ge=0, description="seed of the subject-level split")
    min_brain_fraction: float = Field(0.15, ge=0.0, lt=1.0, description="2D: keep slices more than this much brain")

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if (self.path is None) == (self.phantom is None):
            raise ValueError("give exactly one of path (a dataset folder) or phantom")
        return self

    @property
    def label(self) -> str:
        return self.name or ("phantom" if self.phantom is not None else Path(str(self.path)).name)

    @property
    def cross_sectional_phantom(self) -> bool:
        """A phantom without visits (a dataset folder may be longitudinal: its manifest tells)."""
        return self.phantom is not None and self.phantom.longitudinal is None


class GeneratorSpec(Config):
    """One generator of the grid: a registered model, a preset and overrides."""

    name: str = Field(description="a registered generator (synthmed.generators.registry.names())")
    label: str | None = Field(None, description="its name in the results (default: name, made unique)")
    preset: Preset = "tiny"
    steps: int | None = Field(None, ge=1, description="training steps (default: the preset's)")
    model_overrides: dict[str, Any] = Field(default_factory=dict, description="model config values")
    train_overrides: dict[str, Any] = Field(default_factory=dict, description="training config values")
    seed: int = Field(0, ge=0, description="training and sampling seed")
    sampler: str | None = Field(None, description="sampler (diffusion: ddpm|ddim|rflow)")
    sample_steps: int | None = Field(None, ge=1, description="sampling steps (diffusion)")
    truncation: float | None = Field(None, description="truncation psi (StyleGANs)")

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        from synthmed.generators.registry import names

        if name not in names():
            raise ValueError(f"must be one of {', '.join(names())}")
        return name


class SegmenterSpec(Config):
    """One segmentation network of the grid."""

    name: Literal["unet", "swin"]
    label: str | None = Field(None, description="its name in the results (default: name, made unique)")
    preset: Preset = "tiny"
    steps: int | None = Field(None, ge=1, description="training steps (default: the preset's)")
    model_overrides: dict[str, Any] = Field(default_factory=dict)
    train_overrides: dict[str, Any] = Field(default_factory=dict)


def _classifier_model_overrides(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` unless they name a classifier field set by the study (``ValueError``)."""
    for key in ("task", "network", "mode", "num_outputs", "spatial_dims", "in_channels", "image_shape"):
        if key in values:
            raise ValueError(f"{key} is not an override: it comes from the classifier's task, model and modes "
                             "or from the store")
    return values


class ClassifierSpec(Config):
    """One classifier of the grid (Han et al. 2020; :mod:`synthmed.classify`): a task and a network,
    trained in each of ``modes`` on each of ``train_sets`` with each of ``seeds``, then scored on
    the real test patients clean and under attack at each ``eval_eps``, and by ``saliency``
    against the tumour masks."""

    task: TaskName = Field("presence", description="presence, regions (NCR/ED/ET) or grade (ordinal WT burden)")
    model: NetworkName = Field("resnet18", description="resnet18, resnet50 or densenet121")
    label: str | None = Field(None, description="its name in the results (default: '<task>-<model>', made unique)")
    modes: list[ModeName] = Field(default_factory=lambda: ["standard", "dual-bn"], min_length=1,
                                  description="training modes: standard, adversarial, dual-bn")
    preset: Preset = "tiny"
    steps: int | None = Field(None, ge=1, description="training steps (default: the preset's)")
    eps: float | None = Field(None, ge=0, description="training attack radius (default: the preset's, 0.005)")
    train_sets: list[TrainSet] | None = Field(None, min_length=1, description="default: the study's train_sets")
    seeds: list[int] | None = Field(None, min_length=1, description="default: the study's seeds")
    eval_eps: list[float] = Field(default_factory=lambda: [0.0, 0.005], min_length=1,
                                  description="attack radii of the robust evaluation, in the training norm's units")
    eval_attack_steps: int = Field(10, ge=1, description="PGD steps of the evaluation attack (step eps / 2)")
    saliency: SaliencyMethod | None = Field("gradient", description="saliency method scored against the tumour "
                                            "masks (gradient, smoothgrad, integrated-gradients, gradcam; null: none)")
    dilation: int = Field(1, ge=0, description="voxels the WT mask is dilated by for the saliency scores")
    gallery_samples: int = Field(4, ge=1, description="test subjects in each run's saliency gallery")
    n_boot: int = Field(1000, ge=1, description="subject-bootstrap resamples of the intervals")
    model_overrides: dict[str, Any] = Field(default_factory=dict, description="model config values (e.g. width)")
    train_overrides: dict[str, Any] = Field(default_factory=dict, description="training config values")

    @field_validator("modes")
    @classmethod
    def _distinct_modes(cls, modes: list[str]) -> list[str]:
        for i, mode in enumerate(modes):
            if mode in modes[:i]:
                raise ValueError(f"mode {mode!r} is given twice")
        return modes

    @field_validator("model_overrides")
    @classmethod
    def _own_fields(cls, values: dict[str, Any]) -> dict[str, Any]:
        return _classifier_model_overrides(values)

    @field_validator("eval_eps")
    @classmethod
    def _sweep(cls, values: list[float]) -> list[float]:
        if any(not 0.0 <= v < float("inf") for v in values):
            raise ValueError("every eval_eps must be a finite value >= 0")
        return sorted(set(values))

    def training_overrides(self) -> dict[str, Any]:
        """``train_overrides`` with ``steps`` and ``eps`` when given."""
        values = dict(self.train_overrides)
        values.update({k: v for k, v in (("steps", self.steps), ("eps", self.eps)) if v is not None})
        return values


class GradeClassifierSpec(Config):
    """The grade classifier of the progression risk given inline: one ``classify`` stage trained on
    the real training subjects (the same stage as a ``classifiers:`` entry of equal settings)."""

    model: NetworkName = Field("resnet18", description="resnet18, resnet50 or densenet121")
    mode: ModeName = Field("standard", description="training mode: standard, adversarial, dual-bn")
    preset: Preset = "tiny"
    steps: int | None = Field(None, ge=1, description="training steps (default: the preset's)")
    eps: float | None = Field(None, ge=0, description="training attack radius (default: the preset's)")
    seed: int = Field(0, ge=0, description="training seed")
    model_overrides: dict[str, Any] = Field(default_factory=dict, description="model config values (e.g. width)")
    train_overrides: dict[str, Any] = Field(default_factory=dict, description="training config values")

    @field_validator("model_overrides")
    @classmethod
    def _own_fields(cls, values: dict[str, Any]) -> dict[str, Any]:
        return _classifier_model_overrides(values)

    def as_classifier(self) -> ClassifierSpec:
        """The same settings as a ``grade`` :class:`ClassifierSpec` of one mode, train set ``real`` and seed."""
        return ClassifierSpec(task="grade", model=self.model, modes=[self.mode], preset=self.preset, steps=self.steps,
                              eps=self.eps, train_sets=["real"], seeds=[self.seed],
                              model_overrides=self.model_overrides, train_overrides=self.train_overrides)


class ProgressionSpec(Config):
    """Disease progression (Han et al. 2021; :mod:`synthmed.progression`) on each dataset, which must be
    longitudinal: the training subjects' visits projected into one StyleGAN's latent space
    (``progression_fit``), then the test subjects' follow-ups predicted ``months`` ahead along their
    ``k`` nearest training trajectories and scored (``progression_eval``: the risk of fast
    progression from a grade classifier, the predicted WT growth, an end-to-end baseline classifier,
    and the predicted follow-ups against copying the baseline)."""

    generator: str = Field(description="label of a StyleGAN 1, 2 or 3 of the generators section")
    classifier: str | GradeClassifierSpec | None = Field(
        None, description="label of a grade classifier of the classifiers section (its real-train-set run, the "
        "first seed, mode standard if trained so, else its first mode), or inline grade classifier settings; "
        "null: no risk score")
    space: Literal["w", "wplus"] = Field("w", description="w (one style vector per image) or wplus (one per layer)")
    steps: int | None = Field(None, ge=1, description="projection Adam steps per image (default 1000)")
    batch: int | None = Field(None, ge=1, description="images projected together (default 16; only the speed)")
    seed: int = Field(0, ge=0, description="seed of the projection, the bootstrap and the baseline classifier")
    months: float | None = Field(None, ge=0.0, description="horizon in months (default: the latest at which at "
                                 "least half the test subjects have a visit)")
    k: int = Field(3, ge=1, description="nearest training subjects whose trajectories are combined")
    metric: Literal["cosine", "euclidean"] = Field("cosine", description="distance between latents")
    weighting: Literal["inverse", "softmax", "uniform"] = Field("inverse", description="neighbour weights")
    mode: Literal["endpoints", "piecewise"] = Field("endpoints", description="a neighbour's displacement: last "
                                                    "visit minus baseline, scaled (the paper's), or interpolated")
    baseline: bool = Field(True, description="train and score the end-to-end classifier on baseline images")
    baseline_model: NetworkName = Field("resnet18", description="its network")
    baseline_preset: Preset = Field("tiny", description="its classifier preset")
    baseline_steps: int | None = Field(None, ge=1, description="its training steps (default: the preset's)")
    n_boot: int = Field(1000, ge=1, description="subject-bootstrap resamples of the AUROC intervals")
    gallery_subjects: int = Field(8, ge=1, description="subjects in the baseline | predicted | true gallery")

    def projection(self) -> dict[str, Any]:
        """The :class:`~synthmed.progression.config.ProjectionConfig` values given (the rest its defaults)."""
        values = {"space": self.space, "steps": self.steps, "batch": self.batch, "seed": self.seed}
        return {k: v for k, v in values.items() if v is not None}

    def evaluation(self) -> dict[str, Any]:
        """The arguments of :func:`~synthmed.progression.evaluate.evaluate_progression` given here."""
        return {"months": self.months, "k": self.k, "metric": self.metric, "weighting": self.weighting,
                "mode": self.mode, "baseline": self.baseline, "baseline_network": self.baseline_model,
                "baseline_preset": self.baseline_preset, "baseline_steps": self.baseline_steps,
                "n_boot": self.n_boot, "seed": self.seed, "gallery_subjects": self.gallery_subjects}


class ExecutorSpec(Config):
    """How stages run: ``local`` (this machine: one at a time, or ``workers`` processes) or
    ``ray`` (each stage a Ray task on a cluster whose nodes share the study folder).

    ``resources`` maps a stage kind (``prepare``, ``encoder``, ``fit``, ``sample``, ``fidelity``,
    ``memorization``, ``train``, ``evaluate``, ``classify``, ``classify_eval``, ``progression_fit``,
    ``progression_eval``) to the ``cpus`` / ``gpus`` its Ray task declares, e.g.
    ``{fit: {cpus: 4, gpus: 1}}``; kinds not named keep the defaults.
    """

    kind: str = Field("local", description="local (this machine) or ray (a Ray cluster): an executor registered "
                      "in synthmed.study.executor_registry")
    workers: int | None = Field(None, ge=1, description="stages at a time: local, 1 (default) in this process, "
                                "N > 1 a pool of N processes; ray, at most N in flight (default: as the "
                                "cluster's resources allow)")
    address: str | None = Field(None, description="ray: address of a running cluster to join (e.g. auto, "
                                "ray://head:10001); none starts a local one")
    retries: int = Field(2, ge=0, description="ray: times a failed stage is retried")
    resources: dict[str, dict[Literal["cpus", "gpus"], float]] = Field(
        default_factory=dict, description="ray: per stage kind, the cpus and gpus its task declares")

    @field_validator("kind", mode="before")
    @classmethod
    def _registered(cls, kind: Any) -> Any:
        names = executor_names()
        if kind not in names:
            expected = " or ".join([", ".join(map(repr, names[:-1])), repr(names[-1])] if len(names) > 1 else
                                   [repr(names[0])])
            raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
        return kind

    @field_validator("resources")
    @classmethod
    def _kinds(cls, resources: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for kind, values in resources.items():
            if kind not in KINDS:
                raise ValueError(f"unknown stage kind {kind!r}: keys must be among {', '.join(KINDS)}")
            for name, value in values.items():
                if value < 0:
                    raise ValueError(f"{kind}.{name} must be at least 0, got {value}")
        return resources

    @model_validator(mode="after")
    def _address_needs_ray(self) -> ExecutorSpec:
        if self.address is not None and self.kind != "ray":
            raise ValueError("address is only used by kind: ray")
        return self


class PretrainingSpec(Config):
    """The synthetic pre-training curve: each segmenter pre-trained on a generator's samples,
    then fine-tuned on a share of the real training subjects, against the same segmenter
    trained from scratch on that share. One arm per mode: ``supervised`` (the ``synthetic``
    train stage of the same segmenter, augmentation and seed: images and masks) and ``ssl``
    (self-supervised on the samples' images only, :mod:`synthmed.segmentation.ssl`, for the
    segmenter's steps, inside the fine-tuning stage); see :data:`PRETRAINED_TRAIN_SETS`."""

    subject_fractions: list[float] = Field(default_factory=list,
                                           description="shares of real training subjects in (0, 1] (empty: no curve)")
    finetune_steps: int | None = Field(None, ge=1, description="fine-tuning steps (default: the segmenter's)")
    modes: list[PretrainMode] = Field(default_factory=lambda: ["supervised"], min_length=1,
                                      description="arms of the curve: supervised and/or ssl (self-supervised, "
                                      "images only)")

    @field_validator("modes")
    @classmethod
    def _modes(cls, values: list[str]) -> list[str]:
        return list(dict.fromkeys(values))

    @field_validator("subject_fractions")
    @classmethod
    def _fractions(cls, values: list[float]) -> list[float]:
        if any(not 0.0 < v <= 1.0 for v in values):
            raise ValueError("every subject fraction must be in (0, 1]")
        return sorted(set(values))


class StudySpec(Config):
    """A whole study; see ``examples/demo.yaml`` (one dataset, ``data``) and ``examples/brats.yaml``
    (several, ``datasets``: a list of data sections, each with a distinct ``name``). Every dataset
    gets the whole grid; :meth:`data_sections` lists them either way."""

    name: str = Field("study", min_length=1, description="study name in the results")
    data: DataSpec | None = Field(None, description="the dataset (or give datasets)")
    datasets: list[DataSpec] | None = Field(None, min_length=1,
                                            description="several datasets, each with a name (or give data)")
    generators: list[GeneratorSpec] = Field(default_factory=list)
    samples: int = Field(64, ge=1, description="synthetic samples drawn per generator")
    segmenters: list[SegmenterSpec] = Field(default_factory=list)
    train_sets: list[TrainSet] = Field(default_factory=lambda: ["real", "synthetic"])
    augmentation: list[bool] = Field(default_factory=lambda: [True])
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    classifiers: list[ClassifierSpec] = Field(default_factory=list,
                                              description="classifiers trained on the train sets (none by default)")
    progression: ProgressionSpec | None = Field(None, description="disease progression on a longitudinal dataset "
                                                "(none by default)")
    real_fractions: list[float | None] = Field(
        default_factory=list, description="proportion sweep for synthetic+real: the share of real samples in a fixed "
        "budget; null (or an empty list): all of both stores")
    pretraining: PretrainingSpec = Field(default_factory=PretrainingSpec,
                                         description="synthetic pre-training curve (subject_fractions, finetune_steps, "
                                         "modes)")
    fidelity: list[FeatureSpace] = Field(default_factory=lambda: ["domain"])
    fidelity_weights: dict[str, str] = Field(default_factory=dict, description="feature space → weights path")
    encoder_steps: int = Field(500, ge=1, description="training steps of the domain encoder")
    encoder_seed: int = Field(0, ge=0, description="seed of the domain encoder (weights, data order, augmentation)")
    memorization_threshold: float = Field(0.95, gt=0.0, le=1.0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec)

    @field_validator("real_fractions")
    @classmethod
    def _fractions(cls, values: list[float | None]) -> list[float | None]:
        if any(v is not None and not 0.0 <= v <= 1.0 for v in values):
            raise ValueError("every real fraction must be in [0, 1]")
        return values

    @field_validator("datasets")
    @classmethod
    def _distinct(cls, datasets: list[DataSpec] | None) -> list[DataSpec] | None:
        for i, data in enumerate(datasets or []):
            if data.name is None:
                raise ValueError(f"datasets.{i}.name is missing: each dataset of the list needs a name")
            for j, other in enumerate(datasets[:i]):  # type: ignore[index]
                if other.name == data.name:
                    raise ValueError(f"datasets.{i}.name {data.name!r} is also datasets.{j}'s: names must differ")
                if other.model_dump(exclude={"name"}) == data.model_dump(exclude={"name"}):
                    raise ValueError(f"datasets.{i} is the same data as datasets.{j} (only the name differs)")
        return datasets

    @model_validator(mode="after")
    def _consistent(self) -> StudySpec:
        if (self.data is None) == (self.datasets is None):
            raise ValueError("give exactly one of data (one dataset) or datasets (a list of named datasets)")
        if any(t != "real" for t in self.train_sets) and not self.generators:
            raise ValueError("train_sets synthetic and synthetic+real need at least one generator")
        if self.pretraining.subject_fractions and not (self.generators and self.segmenters):
            raise ValueError("pretraining needs at least one generator and one segmenter")
        for kind in self.fidelity:
            if kind != "domain" and kind not in self.fidelity_weights:
                raise ValueError(f"fidelity {kind} needs fidelity_weights.{kind}: a weights path")
        for i, clf in enumerate(self.classifiers):
            if clf.train_sets is not None and any(t != "real" for t in clf.train_sets) and not self.generators:
                raise ValueError(f"classifiers.{i}.train_sets: synthetic and synthetic+real need at least one generator")
            for data in self.data_sections():
                if data.dims == 3 and data.phantom is not None and data.phantom.tumour_free_share == 0:
                    field = ("tumour_free_fraction" if data.phantom.longitudinal is None
                             else "longitudinal.onset_fraction")
                    raise ValueError(
                        f"classifiers.{i}.task {clf.task} cannot be learnt from dataset {data.label}: its 3D phantom "
                        f"volumes all hold a tumour ({field} 0), so no sample is tumour-free; set "
                        f"phantom.{field} > 0, or dims 2 (slices without tumour)")
        if self.progression is not None:
            self._check_progression(self.progression)
        return self

    def _check_progression(self, prog: ProgressionSpec) -> None:
        """The progression section's generator, classifier and data (ValueErrors naming the field)."""
        from synthmed.progression.synthesis import STYLE_FAMILIES

        generators = dict(zip(self.generator_labels(), self.generators))
        if prog.generator not in generators:
            raise ValueError(f"progression.generator {prog.generator!r} is not a generator of the study (labels: "
                             f"{', '.join(generators) or 'none'})")
        if generators[prog.generator].name not in STYLE_FAMILIES:
            raise ValueError(f"progression.generator {prog.generator!r} is a {generators[prog.generator].name}: the "
                             f"projection needs a style space ({', '.join(STYLE_FAMILIES)})")
        if isinstance(prog.classifier, str):
            classifiers = dict(zip(self.classifier_labels(), self.classifiers))
            clf = classifiers.get(prog.classifier)
            if clf is None:
                raise ValueError(f"progression.classifier {prog.classifier!r} is not a classifier of the study "
                                 f"(labels: {', '.join(classifiers) or 'none'}), nor inline grade classifier settings")
            if clf.task != "grade":
                raise ValueError(f"progression.classifier {prog.classifier!r} is a {clf.task} classifier: the risk "
                                 "needs task grade")
            if "real" not in (clf.train_sets or self.train_sets):
                raise ValueError(f"progression.classifier {prog.classifier!r} is not trained on the real train set "
                                 "(add real to its train_sets)")
        for data in self.data_sections():
            if data.cross_sectional_phantom:
                raise ValueError(f"progression needs longitudinal data: dataset {data.label} is a cross-sectional "
                                 "phantom (give phantom.longitudinal: {subjects, visits, ...})")
            if data.dims != 2:
                raise ValueError(f"progression needs 2D data (one slice per visit): dataset {data.label} has dims "
                                 f"{data.dims}")

    def progression_classifier(self) -> tuple[str, ClassifierSpec, str, int] | None:
        """``(label, classifier, mode, seed)`` of the progression's grade classifier run (``None``: none):
        a ``classifiers:`` entry's real-train-set run of its first seed, mode ``standard`` when it has
        it, else its first; or the inline settings' (label ``grade-<model>``)."""
        prog = self.progression
        if prog is None or prog.classifier is None:
            return None
        if isinstance(prog.classifier, GradeClassifierSpec):
            clf = prog.classifier.as_classifier()
            return f"grade-{clf.model}", clf, clf.modes[0], prog.classifier.seed
        clf = dict(zip(self.classifier_labels(), self.classifiers))[prog.classifier]
        return prog.classifier, clf, "standard" if "standard" in clf.modes else clf.modes[0], (clf.seeds or
                                                                                           self.seeds)[0]

    def data_sections(self) -> list[DataSpec]:
        """The study's datasets: ``[data]`` or ``datasets``."""
        return [self.data] if self.data is not None else list(self.datasets or [])

    def generator_labels(self) -> list[str]:
        return _unique([g.label or g.name for g in self.generators])

    def segmenter_labels(self) -> list[str]:
        return _unique([s.label or s.name for s in self.segmenters])

    def classifier_labels(self) -> list[str]:
        return _unique([c.label or f"{c.task}-{c.model}" for c in self.classifiers])


def _unique(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label}-{seen[label]}")
    return out


def check_overrides(spec: StudySpec, source: str = "study") -> None:
    """Validate every generator's, segmenter's and classifier's (the progression's inline one too)
    ``model_overrides`` and ``train_overrides`` against its preset's configs now, before any stage
    runs (``None`` values keep the preset's).

    Raises:
        SynthmedError: naming the YAML path of each bad key or value, e.g.
            ``study.yaml: generators.0.train_overrides.lrr: Extra inputs are not permitted``.
    """
    # only entries with overrides are checked, so a study without any loads no model code (nor torch)
    checks: list[tuple[str, type, Any, dict[str, Any]]] = []
    generators = [(i, gen) for i, gen in enumerate(spec.generators) if gen.model_overrides or gen.train_overrides]
    segmenters = [(i, seg) for i, seg in enumerate(spec.segmenters) if seg.model_overrides or seg.train_overrides]
    classifiers = [(f"classifiers.{i}", clf) for i, clf in enumerate(spec.classifiers)
                   if clf.model_overrides or clf.train_overrides]
    inline = spec.progression.classifier if spec.progression is not None else None
    if isinstance(inline, GradeClassifierSpec) and (inline.model_overrides or inline.train_overrides):
        classifiers.append(("progression.classifier", inline))
    if generators:
        from synthmed.generators.registry import generator_class
    for i, gen in generators:
        cls = generator_class(gen.name)
        preset = cls.check_preset(gen.preset)[gen.preset]
        checks += [(f"generators.{i}.model_overrides.", cls.model_config, preset.model, gen.model_overrides),
                   (f"generators.{i}.train_overrides.", cls.train_config_model, preset.train, gen.train_overrides)]
    if segmenters:
        from synthmed.segmentation.config import PRESETS, SegmentModelConfig, SegmentTrainConfig
    for i, seg in segmenters:
        preset = PRESETS[seg.preset]
        checks += [(f"segmenters.{i}.model_overrides.", SegmentModelConfig, getattr(preset, seg.name),
                    seg.model_overrides),
                   (f"segmenters.{i}.train_overrides.", SegmentTrainConfig, preset.train, seg.train_overrides)]
    if classifiers:
        from synthmed.classify.config import PRESETS as CLASSIFIER_PRESETS
        from synthmed.classify.config import ClassifierModelConfig, ClassifierTrainConfig
    for where, clf in classifiers:
        preset = CLASSIFIER_PRESETS[clf.preset]
        checks += [(f"{where}.model_overrides.", ClassifierModelConfig, preset.model, clf.model_overrides),
                   (f"{where}.train_overrides.", ClassifierTrainConfig, preset.train, clf.train_overrides)]
    for prefix, model, base, overrides in checks:
        if overrides:
            values = {**base.model_dump(), **{k: v for k, v in overrides.items() if v is not None}}
            build_config(model, source, prefix=prefix, **values)


def build_spec(values: dict[str, Any], source: str = "study", base: Path | None = None) -> StudySpec:
    """Validate a study dict (overrides included, :func:`check_overrides`); a relative ``path``
    of a data section is taken relative to ``base``.

    Raises:
        SynthmedError: naming each invalid field and the allowed values.
    """
    if not isinstance(values, dict):
        raise SynthmedError(f"{source}: expected a mapping of study fields, got {type(values).__name__}")
    spec = build_config(StudySpec, source, **values)
    check_overrides(spec, source)
    if base is None:
        return spec

    def resolved(data: DataSpec) -> DataSpec:
        if data.path is None or Path(data.path).is_absolute():
            return data
        return data.model_copy(update={"path": str((base / data.path).resolve())})

    if spec.data is not None:
        return spec.model_copy(update={"data": resolved(spec.data)})
    return spec.model_copy(update={"datasets": [resolved(d) for d in spec.data_sections()]})


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a study YAML file (``yaml.safe_load`` through
    :func:`~synthmed.config.load_yaml`, which refuses alias bombs and huge files).

    Raises:
        SynthmedError: a missing or unparsable file, or invalid fields (naming them).
    """
    from synthmed.config import load_yaml

    path = Path(path)
    if not path.is_file():
        raise SynthmedError(f"{path}: no such study file")
    values = load_yaml(path)
    return build_spec(values or {}, str(path), base=path.parent)
