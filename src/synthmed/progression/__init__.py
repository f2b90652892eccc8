"""Disease progression (Han et al. 2021): project each visit into a StyleGAN's latent space, extrapolate a
baseline along its nearest training subjects' trajectories, synthesise the future image and mask.

Modules: :mod:`.config` (the projection's settings), :mod:`.synthesis` (a trained StyleGAN's
synthesis: latents and noise maps → encoded samples), :mod:`.losses` (per-image projection
losses), :mod:`.schedule` (learning rate and ``w`` noise), :mod:`.projector` (one batch),
:mod:`.project` (a store → a latent dictionary, resumable), :mod:`.latents` (the latent
dictionary) and :mod:`.extrapolate` (k nearest subjects, time-scaled displacements, chains).

Names are imported on first access (PEP 562): importing the package costs nothing. The
function ``extrapolate`` is reached through its module (``from synthmed.progression.extrapolate
import extrapolate``): the package attribute of that name is the module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synthmed.progression.config import ProjectionConfig
    from synthmed.progression.extrapolate import (Extrapolation, Track, Trajectories, distance_weights,
                                                  extrapolate_chain, latent_distances, nearest_subjects)
    from synthmed.progression.latents import LatentDictionary, longitudinal_table
    from synthmed.progression.losses import DomainPerceptual, ProjectionLoss, noise_penalty, psnr
    from synthmed.progression.project import project_store
    from synthmed.progression.projector import Projection, project_images
    from synthmed.progression.synthesis import StyleSynthesis

#: public name → the submodule defining it.
_HOMES = {
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
