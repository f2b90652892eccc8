"""The GAN family of the reference study: ProGAN, StyleGAN 1, 2 and 3 (configs T and R), with ADA.

Shared pieces live once — :mod:`.layers` (equalized layers, pixel norm, minibatch std,
modulated convolution, noise, mapping network), :mod:`.filters` (FIR design and
resampling, filtered leaky ReLU), :mod:`.losses`, :mod:`.ada` — and each family is one
compact ``networks_<family>.py`` on top of them. :mod:`.task` is the one training task,
:mod:`.model` the :class:`~synthmed.generators.base.Generator` classes, :mod:`.config`
the presets.
"""

from synthmed.generators.gan.ada import AugmentPipe
from synthmed.generators.gan.config import FAMILIES, PRESETS, GANModelConfig, GANPreset, GANTrainConfig
from synthmed.generators.gan.model import GANGenerator, ProGAN, StyleGAN1, StyleGAN2, StyleGAN3
from synthmed.generators.gan.task import GANTask, build_networks, generate

__all__ = [
    "FAMILIES",
    "PRESETS",
    "AugmentPipe",
    "GANGenerator",
    "GANModelConfig",
    "GANPreset",
    "GANTask",
    "GANTrainConfig",
    "ProGAN",
    "StyleGAN1",
    "StyleGAN2",
    "StyleGAN3",
    "build_networks",
    "generate",
]
