"""Generators: one module per family, a registry by name; all obey :mod:`synthmed.generators.base`.

Families: ``ddpm`` (:mod:`.diffusion`), ``ldm`` (:mod:`.latent`: an autoencoder, then the
``ddpm`` diffusion over its latents) and ``progan``, ``stylegan1``, ``stylegan2``, ``stylegan3``
(:mod:`.gan`); what they share around their networks is in :mod:`.common`.

Everything is imported on first use (PEP 562): looking up ``names()`` — which every study
spec does while validating — must not pay for torch, MONAI and Lightning Fabric.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synthmed.generators.base import FitOptions, Generator
    from synthmed.generators.config import PRESETS, DiffusionModelConfig, Preset, TrainConfig
    from synthmed.generators.registry import generator_class, names, register

#: public name → the submodule defining it.
_HOMES = {"FitOptions": "base", "Generator": "base", "PRESETS": "config", "DiffusionModelConfig": "config",
          "Preset": "config", "TrainConfig": "config", "generator_class": "registry", "names": "registry",
          "register": "registry"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)

__all__ = [
    "PRESETS",
    "DiffusionModelConfig",
    "FitOptions",
    "Generator",
    "Preset",
    "TrainConfig",
    "generator_class",
    "names",
    "register",
]
