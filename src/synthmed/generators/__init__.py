"""Generators: one module per family, a registry by name; all obey :mod:`synthmed.generators.base`.

Families: ``ddpm`` (:mod:`.diffusion`) and ``progan``, ``stylegan1``, ``stylegan2``,
``stylegan3`` (:mod:`.gan`); what they share around their networks is in :mod:`.common`.

Heavy modules (MONAI networks) are imported lazily through :func:`generator_class`.
"""

from synthmed.generators.base import FitOptions, Generator
from synthmed.generators.config import PRESETS, DiffusionModelConfig, Preset, TrainConfig
from synthmed.generators.registry import generator_class, names, register

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
