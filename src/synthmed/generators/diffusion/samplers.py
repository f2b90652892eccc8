"""Samplers (the *pipeline*): turn noise into encoded samples with a trained network.

* ``ddpm``: ancestral DDPM, ``K`` steps (default ``T``: the full chain; ``K < T`` strides the
  chain, each jump ``t → t′`` drawing from the posterior ``q(x_t′ | x_t, x0)`` of that jump);
* ``ddim``: deterministic DDIM (η = 0), ``K`` steps (default 50);
* ``rflow``: Euler steps along the rectified flow (MONAI ``RFlowScheduler``), ``K`` steps (default 50).

``ddpm`` and ``ddim`` visit the timesteps ``round(linspace(T−1, 0, K))`` (MONAI's
``set_timesteps``) and jump from each to the next one, then to the clean sample (see
:mod:`.steps`); the estimate of ``x0`` is clamped to ``[-1, 1]`` (the encoding's range) at every
step, as MONAI's ``clip_sample`` does.
``ddpm`` and ``ddim`` need a model trained with a DDPM objective (``epsilon``, ``v`` or ``x0``),
``rflow`` an ``objective="rflow"`` one.
Every random number comes from the ``generator`` passed in, so the same generator state
gives the same samples.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from synthmed.errors import SynthmedError
from synthmed.generators.config import DiffusionModelConfig
from synthmed.generators.diffusion.schedulers import PREDICTION, ddpm_scheduler, rflow_scheduler
from synthmed.generators.diffusion.steps import ancestral_step, chain, ddim_step, split_prediction

SamplerName = Literal["ddpm", "ddim", "rflow"]
SAMPLERS: tuple[str, ...] = ("ddpm", "ddim", "rflow")

def default_sampler(config: DiffusionModelConfig) -> str:
    """``ddim`` for DDPM-trained models, ``rflow`` for rectified-flow ones."""
    return "rflow" if config.objective == "rflow" else "ddim"


def default_steps(config: DiffusionModelConfig, sampler: str) -> int:
    """``T`` for ancestral DDPM, 50 for DDIM and rectified flow (at most ``T``)."""
    return config.train_timesteps if sampler == "ddpm" else min(50, config.train_timesteps)


def check_sampler(config: DiffusionModelConfig, sampler: str, steps: int) -> None:
    """Raise :class:`SynthmedError` if ``sampler`` with ``steps`` does not fit the model."""
    if sampler not in SAMPLERS:
        raise SynthmedError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    if (sampler == "rflow") != (config.objective == "rflow"):
        allowed = "rflow" if config.objective == "rflow" else "ddpm or ddim"
        raise SynthmedError(f"--sampler {sampler} does not fit a model trained with objective "
                            f"{config.objective!r}; use {allowed}")
    if not 1 <= steps <= config.train_timesteps:
        raise SynthmedError(f"--steps must be in 1..{config.train_timesteps} (the model's train timesteps), got {steps}")


@torch.no_grad()
def sample_encoded(
    model: torch.nn.Module,
    config: DiffusionModelConfig,
    n: int,
    *,
    sampler: str,
    steps: int,
    generator: torch.Generator,
    device: torch.device | str,
    on_step: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Draw ``n`` encoded samples.

    Args:
        model: the trained network (in eval mode).
        config: its config.
        n: batch size.
        sampler: ``ddpm``, ``ddim`` or ``rflow``.
        steps: ``K`` network evaluations.
        generator: source of all randomness (on ``device``).
        device: where to sample.
        on_step: called after each network evaluation (progress).

    Returns:
        float32 ``[n, C, *spatial]`` in ``[-1, 1]`` (clamped).
    """
    check_sampler(config, sampler, steps)
    from synthmed.generators.diffusion.networks import n_encoded_channels

    shape = (n, n_encoded_channels(config), *config.image_shape)
    x = torch.randn(shape, generator=generator, device=device)
    if sampler == "rflow":
        sched = rflow_scheduler(config)
        numel = 1
        for s in config.image_shape:
            numel *= int(s)
        sched.set_timesteps(steps, device=device, input_img_size_numel=numel)
        ts = [int(t) for t in sched.timesteps]
        for i, t in enumerate(ts):
            nxt = ts[i + 1] if i + 1 < len(ts) else 0
            v = model(x, torch.full((n,), t, device=device, dtype=torch.long)).float()
            x, _ = sched.step(v, t, x, nxt)
            if on_step:
                on_step()
        return x.clamp(-1.0, 1.0)
    sched = ddpm_scheduler(config)
    sched.set_timesteps(steps)
    for jump in chain(sched.betas, sched.timesteps):
        out = model(x, torch.full((n,), jump.t, device=device, dtype=torch.long)).float()
        x0, eps = split_prediction(out, x, jump.abar_t, PREDICTION[config.objective])
        x0 = x0.clamp(-1.0, 1.0)
        x = ancestral_step(x, x0, jump, generator) if sampler == "ddpm" else ddim_step(x0, eps, jump)
        if on_step:
            on_step()
    return x.clamp(-1.0, 1.0)
