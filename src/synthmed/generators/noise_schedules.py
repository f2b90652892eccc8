"""DDPM noise schedules as plain numbers (no torch: configs check them while a spec validates).

``ᾱ_t = Π_{s ≤ t} (1 − β_s)`` over ``T`` train timesteps ``t = 0 … T − 1``; the forward process is
``x_t = sqrt(ᾱ_t) x_0 + sqrt(1 − ᾱ_t) ε``.

* ``linear``: ``β`` from ``beta_start`` to ``beta_end`` **given for T = 1000 and scaled by
  1000 / T** (the improved-DDPM convention, Nichol & Dhariwal 2021, which guided-diffusion
  follows too), so every ``T`` takes the same noise path: ``sqrt(ᾱ_{T−1}) ≈ 0.006`` with the
  defaults. Unscaled, ``T = 200`` stops at ``sqrt(ᾱ) = 0.36``: the model never sees the pure
  noise that sampling starts from.
* ``cosine``: Nichol & Dhariwal's cosine ``ᾱ`` with ``s = 0.008`` and ``β ≤ 0.999``, as MONAI's
  ``NoiseSchedules["cosine"]`` computes it.
* ``zero_terminal_snr``: either schedule rescaled so that ``ᾱ_{T−1} = 0`` exactly (Lin et al.
  2024, algorithm 1: shift and scale ``sqrt(ᾱ)`` to end at 0, keeping its first value). ε holds
  no information about ``x_0`` at that step, so it needs the ``v`` or ``x0`` objective.

A schedule *reaches noise* when the signal left at the noisiest training step is at most
:data:`MAX_TERMINAL_SIGNAL` (:func:`terminal_signal`).
"""

from __future__ import annotations

import math

#: The most signal ``sqrt(ᾱ_{T−1})`` (rectified flow: ``1/T``) allowed at the noisiest training step.
MAX_TERMINAL_SIGNAL = 0.01

COSINE_S = 8e-3


def betas(schedule: str, train_timesteps: int, beta_start: float = 1e-4, beta_end: float = 2e-2,
          zero_terminal_snr: bool = False) -> list[float]:
    """``β_0 … β_{T−1}`` in float64 (see the module for the conventions).

    Raises:
        ValueError: unknown ``schedule``, or linear betas that leave ``(0, 1)`` once scaled to ``T``.
    """
    T = int(train_timesteps)
    if schedule == "linear":
        scale = 1000.0 / T
        lo, hi = beta_start * scale, beta_end * scale
        if not 0 < lo <= hi < 1:
            raise ValueError(f"the linear schedule scaled to T={T} (betas given for T=1000, x{scale:g}) has betas "
                             f"{lo:g} ... {hi:g}, outside (0, 1): use more train_timesteps or the cosine schedule")
        out = [lo + (hi - lo) * i / (T - 1) for i in range(T)]
    elif schedule == "cosine":
        f = [math.cos((t / T + COSINE_S) / (1 + COSINE_S) * math.pi / 2) ** 2 for t in range(T + 1)]
        out = [min(max(1.0 - f[t + 1] / f[t], 0.0), 0.999) for t in range(T)]
    else:
        raise ValueError(f"schedule must be linear or cosine, got {schedule!r}")
    return _zero_terminal_snr(out) if zero_terminal_snr else out


def _zero_terminal_snr(b: list[float]) -> list[float]:
    root, acc = [], 1.0
    for beta in b:
        acc *= 1.0 - beta
        root.append(math.sqrt(acc))
    first, last = root[0], root[-1]
    abar = [((r - last) * first / (first - last)) ** 2 for r in root]
    return [1.0 - abar[0]] + [1.0 - abar[t] / abar[t - 1] for t in range(1, len(abar))]


def terminal_signal(objective: str, schedule: str, train_timesteps: int, beta_start: float = 1e-4,
                    beta_end: float = 2e-2, zero_terminal_snr: bool = False) -> float:
    """The signal weight left at the noisiest training timestep ``T − 1``.

    ``sqrt(ᾱ_{T−1})`` for the DDPM objectives; ``1/T`` for rectified flow (MONAI's ``x_t`` at
    ``t = T − 1`` is ``(1/T) x_0 + (1 − 1/T) ε``).
    """
    if objective == "rflow":
        return 1.0 / train_timesteps
    b = betas(schedule, train_timesteps, beta_start, beta_end, zero_terminal_snr)
    if max(b) >= 1.0:
        return 0.0
    return math.exp(0.5 * sum(math.log1p(-x) for x in b))
