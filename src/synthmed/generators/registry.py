"""Generators by name: :data:`_REGISTRY` maps each name to its ``"module:Class"`` (imported on first use)
and a summary; the CLI's ``--model`` help, the study spec's validation and :func:`generator_class`
take their names from here, so a new family is one module and one entry (or a :func:`register` call)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from synthmed.lazy_classes import Registered, describe, load_class

if TYPE_CHECKING:
    from synthmed.generators.base import Generator

#: name → ("module:Class", summary); imported lazily so ``synthmed --help`` stays fast.
_REGISTRY: dict[str, Registered] = {
    "ddpm": Registered("synthmed.generators.diffusion.model:DiffusionGenerator",
                       "diffusion; --objective picks DDPM or rectified flow"),
    "ldm": Registered("synthmed.generators.latent.model:LatentDiffusionGenerator",
                      "latent diffusion: an autoencoder, then diffusion in its latents (3D or 2D)"),
    "progan": Registered("synthmed.generators.gan.model:ProGAN", "progressive GAN"),
    "stylegan1": Registered("synthmed.generators.gan.model:StyleGAN1", "AdaIN, progressive"),
    "stylegan2": Registered("synthmed.generators.gan.model:StyleGAN2", "modulated convolutions, ADA"),
    "stylegan3": Registered("synthmed.generators.gan.model:StyleGAN3", "alias-free, ADA"),
}


def register(name: str, target: str, summary: str = "") -> None:
    """Register ``"package.module:Class"`` under ``name`` at run time (a plugin, a test); the shipped
    families are entries of :data:`_REGISTRY`."""
    _REGISTRY[name] = Registered(target, summary)


def names() -> tuple[str, ...]:
    """Registered generator names."""
    return tuple(sorted(_REGISTRY))


def summaries() -> str:
    """Every registered name with its summary, for ``--help``."""
    return describe(_REGISTRY, names())


def generator_class(name: str) -> type[Generator]:
    """The class registered as ``name``.

    Raises:
        SynthmedError: unknown name (the message lists the known ones).
    """
    return load_class(_REGISTRY, "generator", name, names())
