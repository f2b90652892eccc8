"""Samplers (the *pipeline*): turn noise into encoded samples with a trained network.

* ``ddpm``: ancestral DDPM, ``K`` steps (default ``T``: the full chain; ``K < T`` strides the
  chain, each jump ``t → t′`` drawing from the posterior ``q(x_t′ | x_t, x0)`` of that jump);
* ``ddim``: deterministic DDIM (η = 0), ``K`` steps (default 50);
* ``rflow``: Euler steps along the rectified flow (MONAI ``RFlowScheduler``), ``K`` steps (default 50).

``ddpm`` and ``ddim`` visit the timesteps ``round(linspace(T−1, 0, K))`` (MONAI's
``set_timesteps``) and jump from each to the next one, then to the clean sample (see
:mod:`.steps`); with ``clip`` (the default: the joint encoding's range, and min–max-scaled
latents) the estimate of ``x0`` is clamped to ``[-1, 1]`` at every step, as MONAI's
``clip_sample`` does, and so is the sample; without it (std-scaled latents) nothing is clamped.
``ddpm`` and ``ddim`` need a model trained with a DDPM objective (``epsilon``, ``v`` or ``x0``),
``rflow`` an ``objective="rflow"`` one.
Every random number comes from the ``generator`` passed in, so the same generator state
gives the same samples. :func:`sample_decoded` draws batch ``b`` of a run of samples from
``derive_seed(seed, b)`` and decodes it through a :class:`~synthmed.generators.diffusion.codec.Codec`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal

import torch

from synthmed.errors import SynthmedError
from synthmed.generators.config import DiffusionModelConfig
from synthmed.generators.diffusion.codec import Codec
from synthmed.generators.diffusion.schedulers import PREDICTION, ddpm_scheduler, rflow_scheduler
from synthmed.generators.diffusion.steps import ancestral_step, chain, ddim_step, split_prediction
from synthmed.training.seeding import derive_seed, make_generator

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


def resolve_sampler(config: DiffusionModelConfig, sampler: str | None, steps: int | None,
                    default: str | None = None) -> tuple[str, int]:
    """``(sampler, steps)`` with the defaults filled in (``sampler``: ``default``, else
    :func:`default_sampler`; ``steps``: :func:`default_steps`), checked by :func:`check_sampler`.

    Raises:
        SynthmedError: a sampler that does not fit the model, or steps outside ``1 … T``.
    """
    sampler = sampler or default or default_sampler(config)
    steps = default_steps(config, sampler) if steps is None else steps  # 0 is an error, not the default
    check_sampler(config, sampler, steps)
    return sampler, steps


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
    channels: int | None = None,
    clip: bool = True,
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
        channels: channels of a sample (``None``: the joint encoding's, ``C + L``).
        clip: clamp the ``x0`` estimates and the sample to ``[-1, 1]``.

    Returns:
        float32 ``[n, channels, *spatial]``, in ``[-1, 1]`` with ``clip``.
    """
    check_sampler(config, sampler, steps)
    from synthmed.generators.diffusion.networks import n_encoded_channels

    shape = (n, n_encoded_channels(config) if channels is None else int(channels), *config.image_shape)
    bound = (lambda t: t.clamp(-1.0, 1.0)) if clip else (lambda t: t)
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
        return bound(x)
    sched = ddpm_scheduler(config)
    sched.set_timesteps(steps)
    for jump in chain(sched.betas, sched.timesteps):
        out = model(x, torch.full((n,), jump.t, device=device, dtype=torch.long)).float()
        x0, eps = split_prediction(out, x, jump.abar_t, PREDICTION[config.objective])
        x0 = bound(x0)
        x = ancestral_step(x, x0, jump, generator) if sampler == "ddpm" else ddim_step(x0, eps, jump)
        if on_step:
            on_step()
    return bound(x)


def sample_decoded(
    model: torch.nn.Module,
    config: DiffusionModelConfig,
    codec: Codec,
    n: int,
    seed: int,
    *,
    batch_size: int,
    sampler: str,
    steps: int,
    device: torch.device | str,
    on_step: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``n`` decoded samples in batches of ``batch_size``: ``(images float32 [b, C, *S] in
    [0, 1], labels uint8 [b, *S])`` on the CPU.

    Batch ``b`` draws all its noise from a generator seeded by ``derive_seed(seed, b)``, and its
    tensors (``codec.n_channels`` channels, clamped when ``codec.bounded``) are decoded by
    ``codec``: the same ``(seed, batch_size, sampler, steps)`` on the same device gives the same samples.

    Args:
        on_step: ``(batch_samples, steps)`` after each network evaluation (progress).
    """
    model.eval()
    for b, start in enumerate(range(0, n, batch_size)):
        m = min(batch_size, n - start)
        gen = make_generator(derive_seed(seed, b), device)
        tick = (lambda m=m: on_step(m, steps)) if on_step else None
        x = sample_encoded(model, config, m, sampler=sampler, steps=steps, generator=gen, device=device,
                           on_step=tick, channels=codec.n_channels, clip=codec.bounded)
        images, labels = codec.decode(x)
        yield images.cpu(), labels.cpu()
