"""Every schedule reaches noise: the presets, any override, and the refusals (synthmed.generators.noise_schedules)."""

from __future__ import annotations

import math

import pytest
import torch
from monai.networks.schedulers import DDPMScheduler, NoiseSchedules

from synthmed.config import build_config
from synthmed.errors import SynthmedError
from synthmed.generators.config import PRESETS, DiffusionModelConfig
from synthmed.generators.noise_schedules import MAX_TERMINAL_SIGNAL, betas, terminal_signal

from cli_inprocess import invoke_joined as cli
from tiny_stores import make_store


def abar(b: list[float]) -> torch.Tensor:
    return torch.cumprod(1 - torch.tensor(b, dtype=torch.float64), 0)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_reaches_noise(name):
    m = PRESETS[name].model
    signal = terminal_signal(m.objective, m.schedule, m.train_timesteps, m.beta_start, m.beta_end, m.zero_terminal_snr)
    assert signal <= MAX_TERMINAL_SIGNAL, (name, signal)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("T", [100, 200, 256, 500, 1000, 4000])
@pytest.mark.parametrize("objective", ["epsilon", "v", "x0"])
def test_any_timestep_override_reaches_noise(schedule, T, objective):
    cfg = DiffusionModelConfig(objective=objective, schedule=schedule, train_timesteps=T)
    ab = abar(betas(cfg.schedule, T, cfg.beta_start, cfg.beta_end))
    assert math.sqrt(float(ab[-1])) <= MAX_TERMINAL_SIGNAL
    assert torch.all(ab[1:] < ab[:-1])  # strictly noisier every step


def test_linear_is_monai_linear_at_1000_and_the_same_path_at_any_T():
    """Scaled by 1000 / T (improved DDPM): equal to MONAI's linear_beta at T = 1000, and at T = 250
    log ᾱ at the same fraction of the chain agrees to 5 % (unscaled it would be 4 times smaller)."""
    ref = NoiseSchedules["linear_beta"](1000).double()
    torch.testing.assert_close(torch.tensor(betas("linear", 1000), dtype=torch.float64), ref, atol=1e-8, rtol=0)
    fine, coarse = abar(betas("linear", 1000)), abar(betas("linear", 250))
    for frac in (0.1, 0.3, 0.5, 0.7):
        a, b = math.log(float(fine[int(frac * 1000) - 1])), math.log(float(coarse[int(frac * 250) - 1]))
        assert abs(a - b) <= 0.05 * abs(a), (frac, a, b)


@pytest.mark.parametrize("T", [100, 1000])
def test_cosine_equals_monai(T):
    ref, _, _ = NoiseSchedules["cosine"](T)
    torch.testing.assert_close(torch.tensor(betas("cosine", T), dtype=torch.float32), ref, atol=5e-5, rtol=2e-4)  # MONAI: float32


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_zero_terminal_snr_ends_in_pure_noise_and_keeps_the_start(schedule):
    plain, zero = abar(betas(schedule, 1000)), abar(betas(schedule, 1000, zero_terminal_snr=True))
    assert float(zero[-1]) == 0.0 and float(zero[-2]) > 0
    assert abs(float(zero[0]) - float(plain[0])) < 1e-9
    assert torch.all(zero[1:] < zero[:-1])
    assert terminal_signal("v", schedule, 1000, zero_terminal_snr=True) == 0.0


def test_the_old_tiny_schedule_is_what_the_check_refuses():
    """Before the scaling, tiny's T = 200 linear schedule left sqrt(ᾱ) = 0.36: refused by the same check."""
    old = math.sqrt(float(abar(NoiseSchedules["linear_beta"](200).double().tolist())[-1]))
    assert 0.3 < old < 0.4 and old > MAX_TERMINAL_SIGNAL
    with pytest.raises(ValueError, match="does not reach noise"):
        DiffusionModelConfig(train_timesteps=200, beta_start=2e-5, beta_end=4e-3)  # the same betas, given for T=1000


@pytest.mark.parametrize(("overrides", "message"), [
    ({"train_timesteps": 10}, "outside \\(0, 1\\)"),
    ({"train_timesteps": 50, "objective": "rflow"}, "rectified flow with train_timesteps=50 does not reach noise"),
    ({"train_timesteps": 1000, "beta_end": 1e-3}, "does not reach noise"),
    ({"zero_terminal_snr": True, "objective": "epsilon"}, "zero_terminal_snr needs objective v or x0"),
    ({"min_snr_gamma": 5.0, "objective": "rflow"}, "min_snr_gamma"),
])
def test_refused_configs_say_why(overrides, message):
    with pytest.raises(SynthmedError, match=message):
        build_config(DiffusionModelConfig, "test", **overrides)


def test_legacy_objective_name_reads_as_epsilon():
    assert DiffusionModelConfig(objective="ddpm").objective == "epsilon"


def test_monai_scheduler_carries_our_betas():
    from synthmed.generators.diffusion.schedulers import ddpm_scheduler

    cfg = DiffusionModelConfig(train_timesteps=200, zero_terminal_snr=True)
    sched = ddpm_scheduler(cfg)
    assert isinstance(sched, DDPMScheduler) and sched.betas.shape == (200,)
    assert float(sched.alphas_cumprod[-1]) == 0.0


def test_cli_refuses_a_schedule_that_does_not_reach_noise(tmp_path, monkeypatch, capsys):
    store = make_store(tmp_path / "store")
    code, out, err = cli(monkeypatch, capsys, "generator", "train", str(store.path), str(tmp_path / "run"),
                         "--train-timesteps", "40", "--objective", "rflow", "--device", "cpu", "--no-progress")
    assert code == 2 and "does not reach noise" in err and not (tmp_path / "run").exists(), (out, err)
