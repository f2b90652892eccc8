"""Generators by name: :data:`_REGISTRY` maps each name to its ``"module:Class"``, imported on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from synthmed.lazy_classes import load_class

if TYPE_CHECKING:
    from synthmed.generators.base import Generator

#: name → "module:Class"; imported lazily so ``synthmed --help`` stays fast.
_REGISTRY: dict[str, str] = {
    "ddpm": "synthmed.generators.diffusion.model:DiffusionGenerator",
    "progan": "synthmed.generators.gan.model:ProGAN",
    "stylegan1": "synthmed.generators.gan.model:StyleGAN1",
    "stylegan2": "synthmed.generators.gan.model:StyleGAN2",
    "stylegan3": "synthmed.generators.gan.model:StyleGAN3",
}


def register(name: str, target: str) -> None:
    """Register ``"package.module:Class"`` under ``name`` at run time (a plugin, a test); the shipped
    families are entries of :data:`_REGISTRY`."""
    _REGISTRY[name] = target


def names() -> tuple[str, ...]:
    """Registered generator names."""
    return tuple(sorted(_REGISTRY))


def generator_class(name: str) -> type[Generator]:
    """The class registered as ``name``.

    Raises:
        SynthmedError: unknown name (the message lists the known ones).
    """
    return load_class(_REGISTRY, "generator", name, names())
