"""Denoising diffusion (DDPM / DDIM / rectified flow) over the joint image + mask encoding.

Split as in diffusers: :mod:`.networks` (the UNet), :mod:`.schedulers` (noise schedules and
training objectives), :mod:`.samplers` (the sampling pipelines), :mod:`.task` (the training
task) and :mod:`.model` (the :class:`~synthmed.generators.base.Generator`). What is diffused is
a :class:`~synthmed.generators.diffusion.codec.Codec`: the joint encoding here, an
autoencoder's scaled latents in latent diffusion (:mod:`synthmed.generators.latent`).
"""

from synthmed.generators.diffusion.codec import Codec
from synthmed.generators.diffusion.model import DiffusionGenerator
from synthmed.generators.diffusion.networks import build_unet
from synthmed.generators.diffusion.samplers import SAMPLERS, resolve_sampler, sample_decoded, sample_encoded
from synthmed.generators.diffusion.schedulers import ddim_scheduler, ddpm_scheduler, rflow_scheduler, training_loss
from synthmed.generators.diffusion.task import DiffusionTask

__all__ = [
    "SAMPLERS",
    "Codec",
    "DiffusionGenerator",
    "DiffusionTask",
    "build_unet",
    "ddim_scheduler",
    "ddpm_scheduler",
    "resolve_sampler",
    "rflow_scheduler",
    "sample_decoded",
    "sample_encoded",
    "training_loss",
]
