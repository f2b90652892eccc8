"""Schedulers and training objectives (the *scheduler* of the model/scheduler/pipeline split).

The DDPM objectives use MONAI's ``DDPMScheduler`` over the betas of
:mod:`synthmed.generators.noise_schedules` (linear scaled to ``T``, cosine, optionally zero
terminal SNR), so every ``T`` reaches noise.

Objectives (what the network predicts; the loss is the mean squared error of that target, or with
``loss="l1"`` its mean absolute error):

* ``epsilon``: the noise ``ε`` (Ho et al. 2020);
* ``v``: the velocity ``v = sqrt(ᾱ_t) ε − sqrt(1 − ᾱ_t) x_0`` (Salimans & Ho 2022): well
  conditioned at every noise level, where ε-prediction's ``x_0`` estimate divides its error by
  ``sqrt(ᾱ_t)``;
* ``x0``: the clean sample;
* ``rflow``: rectified flow (MONAI ``RFlowScheduler``): ``x_t = (1 - t/T) x_0 + (t/T) ε``, the
  network predicts ``x_0 - ε``; straight paths make few-step Euler sampling work.

``loss="l1"`` takes the mean absolute error instead of the squared one (Khader et al.'s latent
DDPM: an L1 ε-loss).

``min_snr_gamma`` (Hang et al. 2023) weights each timestep's loss by ``min(SNR, γ)`` divided by
the target's own SNR factor (``SNR`` for ε, ``SNR + 1`` for v, 1 for x0), ``SNR = ᾱ/(1 − ᾱ)``; it
does not apply to ``rflow``.

Timesteps and noise come from :class:`~synthmed.training.StepRandom`, so training is
reproducible under resume and DDP.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler, NoiseSchedules, RFlowScheduler

from synthmed.generators.config import DiffusionModelConfig
from synthmed.generators.diffusion.steps import PredictionType
from synthmed.generators.noise_schedules import betas
from synthmed.training.seeding import StepRandom

#: The DDPM objectives as :func:`~synthmed.generators.diffusion.steps.split_prediction` names them.
PREDICTION: dict[str, PredictionType] = {"epsilon": "epsilon", "v": "v_prediction", "x0": "sample"}

_GIVEN = "synthmed_given_betas"
if _GIVEN not in NoiseSchedules.names:
    @NoiseSchedules.add_def(_GIVEN, "betas from synthmed.generators.noise_schedules")
    def _given_betas(num_train_timesteps: int, betas: torch.Tensor) -> torch.Tensor:
        if betas.shape != (num_train_timesteps,):
            raise ValueError(f"need {num_train_timesteps} betas, got shape {tuple(betas.shape)}")
        return betas


def _schedule(config: DiffusionModelConfig) -> dict:
    b = betas(config.schedule, config.train_timesteps, config.beta_start, config.beta_end, config.zero_terminal_snr)
    return {"schedule": _GIVEN, "betas": torch.tensor(b, dtype=torch.float32)}


def ddpm_scheduler(config: DiffusionModelConfig) -> DDPMScheduler:
    """The training (and ancestral sampling) scheduler of a DDPM-objective model (MONAI, our betas)."""
    return DDPMScheduler(num_train_timesteps=config.train_timesteps, **_schedule(config))


def ddim_scheduler(config: DiffusionModelConfig) -> DDIMScheduler:
    """A MONAI DDIM scheduler over the same ``ᾱ`` as :func:`ddpm_scheduler` (a reference in tests)."""
    return DDIMScheduler(num_train_timesteps=config.train_timesteps, **_schedule(config))


def rflow_scheduler(config: DiffusionModelConfig) -> RFlowScheduler:
    """The rectified-flow scheduler (discrete timesteps ``0 … T-1``, uniform sampling)."""
    spatial = math.prod(int(s) for s in config.image_shape)
    return RFlowScheduler(num_train_timesteps=config.train_timesteps, use_discrete_timesteps=True,
                          sample_method="uniform", spatial_dim=config.spatial_dims, base_img_size_numel=spatial)


def scheduler_for(config: DiffusionModelConfig) -> DDPMScheduler | RFlowScheduler:
    """:func:`rflow_scheduler` for ``objective="rflow"``, else :func:`ddpm_scheduler`."""
    return rflow_scheduler(config) if config.objective == "rflow" else ddpm_scheduler(config)


def _snr_weight(abar: torch.Tensor, objective: str, gamma: float) -> torch.Tensor:
    """Min-SNR-γ loss weights ``[B]`` (see the module); ``SNR = 0`` at a zero-SNR terminal step gives 0."""
    snr = abar / (1.0 - abar).clamp_min(1e-12)
    clipped = snr.clamp(max=gamma)
    if objective == "epsilon":
        return clipped / snr.clamp_min(1e-12)
    if objective == "v":
        return clipped / (snr + 1.0)
    return clipped


def training_loss(model: torch.nn.Module, x0: torch.Tensor, config: DiffusionModelConfig,
                  scheduler: DDPMScheduler | RFlowScheduler,
                  random: StepRandom, loss: str = "mse") -> torch.Tensor:
    """The objective's loss on a clean batch.

    Args:
        model: the network ``(x_t, t) → prediction``.
        x0: encoded batch float32 ``[B, C, *spatial]`` (in ``[-1, 1]`` for the joint encoding).
        config: the model config (``objective``, ``train_timesteps``, ``min_snr_gamma``).
        scheduler: from :func:`scheduler_for`.
        random: this step's random numbers (first draw: timesteps, second: noise).
        loss: ``mse`` (squared error) or ``l1`` (absolute error).

    Returns:
        Scalar (weighted) mean squared or absolute error (float32).
    """
    if loss not in ("mse", "l1"):
        raise ValueError(f"loss must be mse or l1, got {loss!r}")
    b = x0.shape[0]
    T = config.train_timesteps
    if config.objective == "rflow":
        t = (random.rand((b,)) * T).long().clamp_(0, T - 1)
        noise = random.randn(x0.shape)
        xt = scheduler.add_noise(x0, noise, t)
        return (F.mse_loss if loss == "mse" else F.l1_loss)(model(xt, t).float(), x0 - noise)
    t = random.randint(0, T, (b,))
    noise = random.randn(x0.shape)
    xt = scheduler.add_noise(x0, noise, t)
    if config.objective == "epsilon":
        target = noise
    elif config.objective == "v":
        target = scheduler.get_velocity(x0, noise, t)
    else:
        target = x0
    diff = model(xt, t).float() - target
    err = (diff.pow(2) if loss == "mse" else diff.abs()).flatten(1).mean(1)
    if config.min_snr_gamma is None:
        return err.mean()
    abar = scheduler.alphas_cumprod.to(x0.device, torch.float64)[t]
    return (err * _snr_weight(abar, config.objective, config.min_snr_gamma).float()).mean()
