"""Scheduler and sampler conventions checked with oracle networks that know the clean sample."""

from __future__ import annotations

import pytest
import torch

from synthmed.generators.config import DiffusionModelConfig
from synthmed.generators.diffusion.samplers import sample_encoded
from synthmed.generators.diffusion.schedulers import ddpm_scheduler, rflow_scheduler, training_loss
from synthmed.training.seeding import StepRandom, make_generator

X0 = torch.linspace(-0.9, 0.9, 5 * 8 * 8).reshape(1, 5, 8, 8)


def config(**kw) -> DiffusionModelConfig:
    return DiffusionModelConfig(image_shape=(8, 8), train_timesteps=100, **kw)


class EpsOracle(torch.nn.Module):
    """Predicts the exact noise of ``x_t`` for the clean sample X0 (DDPM ε-parametrisation)."""

    def __init__(self, cfg):
        super().__init__()
        self.abar = ddpm_scheduler(cfg).alphas_cumprod

    def forward(self, x, t):
        a = self.abar[t].view(-1, 1, 1, 1)
        return (x - a.sqrt() * X0) / (1 - a).sqrt()


class VelocityOracle(torch.nn.Module):
    """Predicts the exact rectified-flow velocity ``x0 - ε`` for X0."""

    def __init__(self, cfg):
        super().__init__()
        self.T = cfg.train_timesteps

    def forward(self, x, t):
        s = (t.float() / self.T).view(-1, 1, 1, 1)
        return (X0 - x) / s


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_ddim_with_exact_noise_returns_the_clean_sample(schedule):
    cfg = config(schedule=schedule)
    out = sample_encoded(EpsOracle(cfg), cfg, 1, sampler="ddim", steps=10, generator=make_generator(0), device="cpu")
    torch.testing.assert_close(out, X0, atol=1e-4, rtol=0)


def test_ddpm_ancestral_with_exact_noise_ends_near_the_clean_sample():
    cfg = config()
    out = sample_encoded(EpsOracle(cfg), cfg, 1, sampler="ddpm", steps=100, generator=make_generator(0), device="cpu")
    assert (out - X0).abs().max() < 0.05  # ancestral noise at the last steps is tiny


def test_rflow_with_exact_velocity_returns_the_clean_sample():
    cfg = config(objective="rflow")
    out = sample_encoded(VelocityOracle(cfg), cfg, 1, sampler="rflow", steps=4, generator=make_generator(0), device="cpu")
    torch.testing.assert_close(out, X0, atol=1e-4, rtol=0)


def test_training_losses_are_zero_for_oracles_and_not_otherwise():
    for cfg, oracle in ((config(), EpsOracle), (config(objective="rflow"), VelocityOracle)):
        sched = ddpm_scheduler(cfg) if cfg.objective == "ddpm" else rflow_scheduler(cfg)
        x0 = X0.expand(4, -1, -1, -1)
        loss = training_loss(oracle(cfg), x0, cfg, sched, StepRandom(0, 1))
        assert loss < 1e-6, cfg.objective
        wrong = training_loss(lambda x, t: torch.zeros_like(x), x0, cfg, sched, StepRandom(0, 1))
        assert wrong > 0.1
