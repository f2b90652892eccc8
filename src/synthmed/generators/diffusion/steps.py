"""DDPM and DDIM updates for a jump ``t → t′`` of a strided chain (``t′ < t``, any stride).

MONAI's ``DDPMScheduler.step`` assumes ``t′ = t − 1`` and its ``DDIMScheduler.step`` jumps to
``t − T // K``, which is not the next sampled timestep when ``K`` does not divide ``T``. Here
every update is written in ``ᾱ_t`` and ``ᾱ_t′`` of the actual pair (``ᾱ = 1`` for ``t′ = −1``,
the clean end of the chain), so any increasing timestep list works.

With ``x_t = sqrt(ᾱ_t) x0 + sqrt(1 − ᾱ_t) ε`` and ``α_{t→t′} = ᾱ_t / ᾱ_t′``, the forward jump is
``q(x_t | x_t′) = N(sqrt(α_{t→t′}) x_t′, (1 − α_{t→t′}) I)`` and the posterior (Ho et al. 2020,
eq. 6–7, with ``β_t`` replaced by ``1 − α_{t→t′}``) is

    q(x_t′ | x_t, x0) = N(c0 x0 + ct x_t, σ² I),
    c0 = sqrt(ᾱ_t′) (1 − α_{t→t′}) / (1 − ᾱ_t),
    ct = sqrt(α_{t→t′}) (1 − ᾱ_t′) / (1 − ᾱ_t),
    σ² = (1 − ᾱ_t′) (1 − α_{t→t′}) / (1 − ᾱ_t)   ("fixed small" variance).

Ancestral sampling draws from it with ``x0`` replaced by the network's estimate; DDIM (η = 0)
moves deterministically to ``sqrt(ᾱ_t′) x0 + sqrt(1 − ᾱ_t′) ε``. Schedules are computed in
float64 from the betas (``log ᾱ = Σ log(1 − β)``), so a one-step jump's ``1 − α`` is ``β_t``
to float64 precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

#: What the network predicts (names as MONAI's ``DDPMPredictionType``): the noise ``ε``, the clean
#: sample ``x0`` or the velocity ``v = sqrt(ᾱ_t) ε − sqrt(1 − ᾱ_t) x0`` (Salimans & Ho 2022).
PredictionType = Literal["epsilon", "sample", "v_prediction"]


@dataclass(frozen=True)
class Jump:
    """One step of a chain: from timestep ``t`` to ``prev`` (``−1``: the clean sample).

    ``abar_t``, ``abar_prev``: ``ᾱ`` at both ends (``abar_prev = 1`` for ``prev = −1``);
    ``one_minus_alpha``: ``1 − ᾱ_t / ᾱ_prev``, the jump's accumulated beta.
    """

    t: int
    prev: int
    abar_t: float
    abar_prev: float
    one_minus_alpha: float


def chain(betas: torch.Tensor, timesteps: torch.Tensor | list[int]) -> list[Jump]:
    """The jumps of a chain visiting ``timesteps`` (strictly decreasing, in ``0 … T−1``) then ``−1``.

    Args:
        betas: the schedule's ``β_0 … β_{T−1}`` (``[T]``, any float dtype).
        timesteps: e.g. a MONAI scheduler's ``timesteps`` after ``set_timesteps(K)``.

    Raises:
        ValueError: ``timesteps`` is not strictly decreasing within ``0 … T−1``.
    """
    ts = [int(t) for t in timesteps]
    T = int(betas.shape[0])
    if not ts or any(a <= b for a, b in zip(ts, ts[1:])) or ts[0] >= T or ts[-1] < 0:
        raise ValueError(f"timesteps must be strictly decreasing in 0..{T - 1}, got {ts}")
    log_abar = torch.cumsum(torch.log1p(-betas.double()), 0).tolist()
    jumps = []
    for i, t in enumerate(ts):
        prev = ts[i + 1] if i + 1 < len(ts) else -1
        log_prev = log_abar[prev] if prev >= 0 else 0.0
        jumps.append(Jump(t, prev, math.exp(log_abar[t]), math.exp(log_prev), -math.expm1(log_abar[t] - log_prev)))
    return jumps


def split_prediction(output: torch.Tensor, x_t: torch.Tensor, abar_t: float,
                     prediction: PredictionType = "epsilon") -> tuple[torch.Tensor, torch.Tensor]:
    """``(x0, ε)`` estimates from the network ``output`` at ``x_t`` (same shapes as ``x_t``)."""
    a, s = math.sqrt(abar_t), math.sqrt(1.0 - abar_t)
    if prediction == "epsilon":
        return (x_t - s * output) / a, output
    if prediction == "sample":
        return output, (x_t - a * output) / s
    if prediction == "v_prediction":
        return a * x_t - s * output, s * x_t + a * output
    raise ValueError(f"prediction must be epsilon, sample or v_prediction, got {prediction!r}")


def posterior_mean_std(x_t: torch.Tensor, x0: torch.Tensor, jump: Jump) -> tuple[torch.Tensor, float]:
    """Mean (shape of ``x_t``) and standard deviation of ``q(x_prev | x_t, x0)`` (see the module)."""
    c0 = math.sqrt(jump.abar_prev) * jump.one_minus_alpha / (1.0 - jump.abar_t)
    ct = math.sqrt(1.0 - jump.one_minus_alpha) * (1.0 - jump.abar_prev) / (1.0 - jump.abar_t)
    var = (1.0 - jump.abar_prev) * jump.one_minus_alpha / (1.0 - jump.abar_t)
    return c0 * x0 + ct * x_t, math.sqrt(var)


def ancestral_step(x_t: torch.Tensor, x0: torch.Tensor, jump: Jump, generator: torch.Generator) -> torch.Tensor:
    """Draw ``x_prev ~ q(x_prev | x_t, x0)``; at the last jump (``prev = −1``) return ``x0`` and draw nothing.

    The noise is one ``torch.randn`` of ``x_t``'s shape per jump from ``generator``.
    """
    mean, std = posterior_mean_std(x_t, x0, jump)
    if jump.prev < 0:
        return mean
    noise = torch.randn(x_t.shape, dtype=x_t.dtype, device=x_t.device, generator=generator)
    return mean + std * noise


def ddim_step(x0: torch.Tensor, eps: torch.Tensor, jump: Jump) -> torch.Tensor:
    """Deterministic DDIM (η = 0): ``sqrt(ᾱ_prev) x0 + sqrt(1 − ᾱ_prev) ε``."""
    return math.sqrt(jump.abar_prev) * x0 + math.sqrt(1.0 - jump.abar_prev) * eps
