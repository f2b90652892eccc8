"""Noise schedules and training objectives (the *scheduler* of the model/scheduler/pipeline split).

* ``ddpm``: MONAI ``DDPMScheduler`` with a linear (``beta_start … beta_end``) or cosine
  schedule over ``T`` train timesteps. ``x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε``; the network
  predicts ``ε``; loss ``mean((ε̂ - ε)²)``.
* ``rflow``: MONAI ``RFlowScheduler`` (rectified flow). ``x_t = (1 - t/T) x_0 + (t/T) ε``; the
  network predicts the velocity ``v = x_0 - ε``; loss ``mean((v̂ - v)²)``. Straight paths
  make few-step sampling (10–50 Euler steps) work.

Timesteps and noise come from :class:`~synthmed.training.StepRandom`, so training is
reproducible under resume and DDP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler, RFlowScheduler

from synthmed.generators.config import DiffusionModelConfig
from synthmed.training.seeding import StepRandom


def _schedule_args(config: DiffusionModelConfig) -> dict:
    if config.schedule == "linear":
        return {"schedule": "linear_beta", "beta_start": config.beta_start, "beta_end": config.beta_end}
    return {"schedule": "cosine"}


def ddpm_scheduler(config: DiffusionModelConfig) -> DDPMScheduler:
    """The training (and ancestral sampling) scheduler of a ``ddpm`` model."""
    return DDPMScheduler(num_train_timesteps=config.train_timesteps, **_schedule_args(config))


def ddim_scheduler(config: DiffusionModelConfig) -> DDIMScheduler:
    """A DDIM scheduler over the same ``ᾱ`` as :func:`ddpm_scheduler`."""
    return DDIMScheduler(num_train_timesteps=config.train_timesteps, **_schedule_args(config))


def rflow_scheduler(config: DiffusionModelConfig) -> RFlowScheduler:
    """The rectified-flow scheduler (discrete timesteps ``0 … T-1``, uniform sampling)."""
    spatial = 1
    for s in config.image_shape:
        spatial *= int(s)
    return RFlowScheduler(num_train_timesteps=config.train_timesteps, use_discrete_timesteps=True,
                          sample_method="uniform", spatial_dim=config.spatial_dims, base_img_size_numel=spatial)


def training_loss(model: torch.nn.Module, x0: torch.Tensor, config: DiffusionModelConfig,
                  scheduler: DDPMScheduler | RFlowScheduler, random: StepRandom) -> torch.Tensor:
    """The objective's loss on a clean batch.

    Args:
        model: the network ``(x_t, t) → prediction``.
        x0: encoded batch float32 ``[B, C, *spatial]`` in ``[-1, 1]``.
        config: the model config (``objective``, ``train_timesteps``).
        scheduler: from :func:`ddpm_scheduler` or :func:`rflow_scheduler`.
        random: this step's random numbers (first draw: timesteps, second: noise).

    Returns:
        Scalar mean squared error (float32).
    """
    b = x0.shape[0]
    T = config.train_timesteps
    if config.objective == "ddpm":
        t = random.randint(0, T, (b,))
        noise = random.randn(x0.shape)
        xt = scheduler.add_noise(x0, noise, t)
        return F.mse_loss(model(xt, t).float(), noise)
    t = (random.rand((b,)) * T).long().clamp_(0, T - 1)
    noise = random.randn(x0.shape)
    xt = scheduler.add_noise(x0, noise, t)
    return F.mse_loss(model(xt, t).float(), x0 - noise)
