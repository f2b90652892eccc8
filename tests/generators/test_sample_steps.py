"""`generator sample --steps 0` is an error, not the default step count."""

from __future__ import annotations

import pytest

from synthmed.errors import SynthmedError
from synthmed.generators.diffusion.model import DiffusionGenerator


def test_zero_steps_is_refused_and_none_is_the_default():
    gen = DiffusionGenerator.from_options("tiny")
    with pytest.raises(SynthmedError, match=r"--steps must be in 1\.\.\d+ .*got 0"):
        gen.resolve_sampler("ddim", 0)
    with pytest.raises(SynthmedError, match="got 0"):
        gen.resolve_sampler(None, 0)
    sampler, steps = gen.resolve_sampler("ddim", None)
    assert sampler == "ddim" and steps == min(50, gen.config.train_timesteps)
