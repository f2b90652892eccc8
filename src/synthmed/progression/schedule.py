"""The projection schedule as numbers: learning rate and ``w`` noise at progress ``t = step / steps`` (NVlabs)."""

from __future__ import annotations

import math

from synthmed.progression.config import ProjectionConfig


def learning_rate(t: float, config: ProjectionConfig) -> float:
    """``lr · ramp(t)``: a cosine ramp-down over the last ``lr_rampdown`` of the steps times a
    linear ramp-up over the first ``lr_rampup`` (each 1 when its share is 0)."""
    down = 1.0 if config.lr_rampdown == 0 else min(1.0, (1.0 - t) / config.lr_rampdown)
    ramp = 0.5 - 0.5 * math.cos(down * math.pi)
    up = 1.0 if config.lr_rampup == 0 else min(1.0, t / config.lr_rampup)
    return config.lr * ramp * up


def w_noise_scale(t: float, config: ProjectionConfig, w_std: float) -> float:
    """Standard deviation of the noise added to ``w`` at ``t``: ``w_std · w_noise ·
    max(0, 1 − t / w_noise_ramp)²``."""
    return w_std * config.w_noise * max(0.0, 1.0 - t / config.w_noise_ramp) ** 2
