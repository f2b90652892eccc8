"""Denoising diffusion (DDPM / DDIM / rectified flow) over the joint image + mask encoding.

Split as in diffusers: :mod:`.networks` (the UNet), :mod:`.schedulers` (noise schedules and
training objectives), :mod:`.samplers` (the sampling pipelines), :mod:`.task` (the training
task) and :mod:`.model` (the :class:`~synthmed.generators.base.Generator`).
"""

from synthmed.generators.diffusion.model import DiffusionGenerator
from synthmed.generators.diffusion.networks import build_unet
from synthmed.generators.diffusion.samplers import SAMPLERS, sample_encoded
from synthmed.generators.diffusion.schedulers import ddim_scheduler, ddpm_scheduler, rflow_scheduler, training_loss
from synthmed.generators.diffusion.task import DiffusionTask

__all__ = [
    "SAMPLERS",
    "DiffusionGenerator",
    "DiffusionTask",
    "build_unet",
    "ddim_scheduler",
    "ddpm_scheduler",
    "rflow_scheduler",
    "sample_encoded",
    "training_loss",
]
