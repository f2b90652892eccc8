"""The progression run directory and ``synthmed progression fit``: the training subjects' visits projected into a
StyleGAN's latent space, with the generator and grade classifier the run uses.

Layout::

    RUN/
      run.json        kind "progression"; model: generator (kind, run, step, …), space, projection
                      (the ProjectionConfig), encoder, classifier (the grade classifier run, or null);
                      data: the fitted store (path, hash, split "train", subjects, samples); seed
      latents/        the latent dictionary of the store's train split (progression.latents);
                      latents.partial/ while it is projected (resumable)
      projections/    latent dictionaries of the baselines ``predict`` and ``evaluate`` projected,
                      one per store content and sample set (reused, resumed when killed)
      baselines/      end-to-end progressor classifiers ``evaluate`` trained (classifier runs)
      eval/           ``evaluate``'s JSON, CSV and gallery PNG

``fit`` checks everything before any work (a StyleGAN run, store samples it makes, one sample
per visit, training subjects with a follow-up, a ``grade`` classifier that fits the store),
then opens the run (one writer at a time, ``RUN/.lock``) and projects. A killed fit leaves
``run.json`` and ``latents.partial/``: ``--resume`` continues the projection from its next
batch; a run is finished when ``latents/`` exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthmed.config import build_config
from synthmed.data.store import Store
from synthmed.errors import SynthmedError
from synthmed.outputs import OutputKind, guard_output
from synthmed.progression.config import ProjectionConfig
from synthmed.progression.followup import check_one_sample_per_visit, subjects_with_followup
from synthmed.progression.latents import LatentDictionary

KIND = "progression"
LATENTS_DIR = "latents"
PROJECTIONS_DIR = "projections"
BASELINES_DIR = "baselines"
EVAL_DIR = "eval"
#: What ``fit --overwrite`` may replace.
PROGRESSION_RUN = OutputKind("progression run", marker="run.json",
                             entries=("run.json", LATENTS_DIR, f"{LATENTS_DIR}.partial", PROJECTIONS_DIR,
                                      BASELINES_DIR, EVAL_DIR),
                             run_kinds=(KIND,))

__all__ = ["KIND", "PROGRESSION_RUN", "ProgressionRun", "check_grade_classifier", "fit_progression"]


def check_grade_classifier(classifier: str | Path, store: Store, *, device: str = "cpu") -> dict[str, Any]:
    """``{"run", "task", "network", "mode"}`` of a ``grade`` classifier run that takes ``store``'s samples.

    Raises:
        SynthmedError: not a classifier run, no checkpoint, another task, or samples it was not
            trained on (naming the run or the store).
    """
    from synthmed.classify.api import load_classifier
    from synthmed.classify.samples import check_fits

    _, config, _, _ = load_classifier(classifier, device=device)
    if config.task != "grade":
        raise SynthmedError(f"{classifier}: a {config.task} classifier; the risk needs a grade classifier "
                            "(synthmed classify train … --task grade)")
    check_fits(store, config)
    return {"run": str(Path(classifier).resolve()), "task": config.task, "network": config.network,
            "mode": config.mode}


def check_fit_store(store: Store) -> list[str]:
    """The train split's subjects with a follow-up, after checking the split can be fitted.

    Raises:
        SynthmedError: no train split, several samples per visit, or no subject with a follow-up.
    """
    if "train" not in store.splits:
        raise SynthmedError(f"{store.path}: no train split (splits: {list(store.splits)})")
    check_one_sample_per_visit(store.samples, str(store.path), "train")
    followed = subjects_with_followup(store.samples, "train")
    if not followed:
        raise SynthmedError(f"{store.path}: no training subject has a follow-up (a second visit at known months "
                            "after its baseline), so there is no trajectory to extrapolate along; prepare a "
                            "longitudinal dataset (subject_id and months in the manifest)")
    return followed


def fit_progression(store: str | Path, run: str | Path, generator: str | Path, *,
                    config: ProjectionConfig = ProjectionConfig(), classifier: str | Path | None = None,
                    encoder: str | Path | None = None, device: str = "auto", resume: bool = False,
                    overwrite: bool = False, progress: bool = True) -> LatentDictionary:
    """Project the train split of ``store`` with the StyleGAN ``generator`` into ``run`` (the module docstring).

    Args:
        store: a longitudinal store (one sample per visit).
        run: the progression run directory to write.
        generator: a StyleGAN 1, 2 or 3 run directory or saved folder, trained on such samples.
        config: the projection's settings.
        classifier: a ``grade`` classifier run (``classify train --task grade``) for the risk.
        encoder: a domain encoder run, for ``config.perceptual > 0``.
        resume, overwrite: continue a killed fit, or replace ``run``.

    Returns:
        The training latent dictionary.

    Raises:
        SynthmedError: see the module docstring (all checked before ``run`` is written).
    """
    from synthmed.data.fingerprint import store_hash
    from synthmed.progression.project import check_store, project_store
    from synthmed.progression.synthesis import StyleSynthesis
    from synthmed.training.run import open_run

    run = guard_output(run, [store, generator, classifier, encoder], kind=PROGRESSION_RUN, overwrite=overwrite,
                       resume=resume)
    opened = Store.open(store)
    followed = check_fit_store(opened)
    synthesis = StyleSynthesis.load(generator, device=device)
    check_store(opened, synthesis)
    grade = None if classifier is None else check_grade_classifier(classifier, opened)
    train = opened.samples[opened.samples["split"] == "train"]
    model = {"generator": synthesis.describe(), "space": config.space, "projection": config.model_dump(mode="json"),
             "encoder": None if encoder is None else str(Path(encoder).resolve()), "classifier": grade}
    data = {"store": str(opened.path.resolve()), "store_hash": store_hash(opened.path), "split": "train",
            "subjects": int(train["subject_id"].nunique()), "subjects_with_followup": len(followed),
            "samples": int(len(train))}
    opened_run = open_run(run, kind=KIND, model=model, training={}, seed=config.seed, data=data, resume=resume,
                          overwrite=overwrite)
    try:
        return project_store(opened, generator, run / LATENTS_DIR, config=config, split="train", encoder=encoder,
                             device=device, resume=opened_run.resumed, progress=progress)
    finally:
        opened_run.close()


@dataclass
class ProgressionRun:
    """A finished progression run, read-only (see the module docstring).

    Attributes:
        path: the run directory.
        info: its ``run.json``.
    """

    path: Path
    info: dict[str, Any]

    @classmethod
    def open(cls, path: str | Path) -> ProgressionRun:
        """Open a finished run.

        Raises:
            SynthmedError: not a progression run, or its projection is unfinished (resume it).
        """
        from synthmed.training.run import read_run

        path = Path(path)
        info = read_run(path)
        if info.get("kind") != KIND:
            raise SynthmedError(f"{path}: a {info.get('kind')!r} run, not a progression run (synthmed progression fit)")
        if not (path / LATENTS_DIR / "latents.json").is_file():
            raise SynthmedError(f"{path}: the fit is unfinished (no {LATENTS_DIR}/); continue it with "
                                "synthmed progression fit … --resume")
        return cls(path, info)

    @property
    def generator(self) -> Path:
        """The generator's run directory or saved folder."""
        return Path(self.info["model"]["generator"]["run"])

    @property
    def projection(self) -> ProjectionConfig:
        """The projection's settings (used for the baselines too)."""
        return build_config(ProjectionConfig, f"{self.path}: bad projection config", **self.info["model"]["projection"])

    @property
    def encoder(self) -> Path | None:
        """The domain encoder run of the perceptual term, if any."""
        encoder = self.info["model"].get("encoder")
        return None if encoder is None else Path(encoder)

    @property
    def classifier(self) -> Path | None:
        """The grade classifier run recorded by ``fit``, if any."""
        grade = self.info["model"].get("classifier")
        return None if grade is None else Path(grade["run"])

    @property
    def store(self) -> Path:
        """The fitted store (its train split is the training subjects)."""
        return Path(self.info["data"]["store"])

    def latents(self) -> LatentDictionary:
        """The training subjects' latent dictionary."""
        return LatentDictionary.open(self.path / LATENTS_DIR)

    def folder(self, name: str) -> Path:
        """``RUN/<name>``: :data:`PROJECTIONS_DIR`, :data:`BASELINES_DIR` or :data:`EVAL_DIR`."""
        return self.path / name
