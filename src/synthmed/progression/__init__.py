"""Disease progression (Han et al. 2021): project each visit into a StyleGAN's latent space, extrapolate a
baseline along its nearest training subjects' trajectories, synthesise the future image and mask.

Modules: :mod:`.config` (the projection's settings), :mod:`.synthesis` (a trained StyleGAN's
synthesis: latents and noise maps → encoded samples), :mod:`.losses` (per-image projection
losses), :mod:`.schedule` (learning rate and ``w`` noise), :mod:`.projector` (one batch),
:mod:`.project` (a store → a latent dictionary, resumable), :mod:`.latents` (the latent
dictionary), :mod:`.extrapolate` (k nearest subjects, time-scaled displacements, chains),
:mod:`.risk` (class probabilities from cumulative grade outputs; the risk), :mod:`.followup`
(baselines, follow-ups at a horizon, fast-progressor ground truth), :mod:`.api` (the run
directory and ``fit``), :mod:`.predict` (predicted follow-ups, as a store), :mod:`.baseline`
(the end-to-end baseline classifier), :mod:`.evaluate` (``evaluate``) and :mod:`.gallery`.

Names are imported on first access (PEP 562): importing the package costs nothing. The
function ``extrapolate`` is reached through its module (``from synthmed.progression.extrapolate
import extrapolate``): the package attribute of that name is the module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synthmed.progression.api import ProgressionRun, fit_progression
    from synthmed.progression.baseline import train_progressor_classifier
    from synthmed.progression.config import ProjectionConfig
    from synthmed.progression.evaluate import evaluate_progression
    from synthmed.progression.extrapolate import (Extrapolation, Track, Trajectories, distance_weights,
                                                  extrapolate_chain, latent_distances, nearest_subjects)
    from synthmed.progression.followup import Pairs, baselines, default_horizon, followup_pairs, pair_grades
    from synthmed.progression.gallery import progression_gallery
    from synthmed.progression.latents import LatentDictionary, longitudinal_table
    from synthmed.progression.losses import DomainPerceptual, ProjectionLoss, noise_penalty, psnr
    from synthmed.progression.project import project_store
    from synthmed.progression.predict import Prediction, predict_followups, predict_store
    from synthmed.progression.projector import Projection, project_images
    from synthmed.progression.risk import fast_progressor, grade_probabilities, progression_risk
    from synthmed.progression.synthesis import StyleSynthesis

#: public name → the submodule defining it.
_HOMES = {
    "ProgressionRun": "api", "fit_progression": "api",
    "train_progressor_classifier": "baseline",
    "evaluate_progression": "evaluate",
    "Pairs": "followup", "baselines": "followup", "default_horizon": "followup", "followup_pairs": "followup",
    "pair_grades": "followup",
    "progression_gallery": "gallery",
    "Prediction": "predict", "predict_followups": "predict", "predict_store": "predict",
    "fast_progressor": "risk", "grade_probabilities": "risk", "progression_risk": "risk",
    "ProjectionConfig": "config",
    "Extrapolation": "extrapolate", "Track": "extrapolate", "Trajectories": "extrapolate",
    "distance_weights": "extrapolate", "extrapolate_chain": "extrapolate",
    "latent_distances": "extrapolate", "nearest_subjects": "extrapolate",
    "LatentDictionary": "latents", "longitudinal_table": "latents",
    "DomainPerceptual": "losses", "ProjectionLoss": "losses", "noise_penalty": "losses", "psnr": "losses",
    "project_store": "project",
    "Projection": "projector", "project_images": "projector",
    "StyleSynthesis": "synthesis",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)


__all__ = sorted(_HOMES)
