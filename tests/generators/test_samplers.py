"""Scheduler and sampler conventions checked with oracle networks that know the clean sample."""

from __future__ import annotations

import pytest
import torch

from synthmed.generators.config import DiffusionModelConfig
from synthmed.generators.diffusion.samplers import sample_encoded
from synthmed.generators.diffusion.schedulers import ddim_scheduler, ddpm_scheduler, scheduler_for, training_loss
from synthmed.generators.diffusion.steps import ancestral_step, chain, ddim_step, split_prediction
from synthmed.training.seeding import StepRandom, make_generator

X0 = torch.linspace(-0.9, 0.9, 5 * 8 * 8).reshape(1, 5, 8, 8)


def config(**kw) -> DiffusionModelConfig:
    kw.setdefault("objective", "epsilon")
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
        sched = scheduler_for(cfg)
        x0 = X0.expand(4, -1, -1, -1)
        loss = training_loss(oracle(cfg), x0, cfg, sched, StepRandom(0, 1))
        assert loss < 1e-6, cfg.objective
        wrong = training_loss(lambda x, t: torch.zeros_like(x), x0, cfg, sched, StepRandom(0, 1))
        assert wrong > 0.1


# -- exact-score oracles for Gaussian data: every pixel x0 ~ N(mu, sigma²), independently.
#
# For DDPM, x_t = sqrt(ab) x0 + sqrt(1-ab) ε is Gaussian with mean sqrt(ab) mu and variance
# V = ab sigma² + 1 - ab, and Cov(ε, x_t) = sqrt(1-ab), so the MSE-optimal noise prediction is
#     ε*(x_t, t) = E[ε | x_t] = sqrt(1-ab) (x_t - sqrt(ab) mu) / V.
# For rectified flow, x_t = (1-s) x0 + s ε with s = t/T: V = (1-s)² sigma² + s², and the
# MSE-optimal velocity is v*(x_t, t) = E[x0 - ε | x_t] = mu + ((1-s) sigma² - s) (x_t - (1-s) mu) / V.
#
# Each sampler step is then affine in x plus Gaussian noise, so its output is Gaussian with a
# mean and variance that a scalar float64 recursion gives exactly (`chain_moments`). The mean
# is the data's at every K for every sampler; the variance is the data's only as K → T: with
# large jumps, the fixed posterior variance of ancestral sampling misses
# (coef of x0)² · Var(x0 | x_t) (Bao et al. 2022, Analytic-DPM), and DDIM/Euler under-disperse.
# For sigma in [0.15, 0.22] the exact chains give this share of the data's variance:
#   K = 1000: ddpm 0.95–0.97, ddim 0.98–0.99, rflow 0.99;   K = 50: ddpm 0.56–0.65, ddim 0.71–0.79,
#   rflow 0.88–0.91;   K = 10: ddpm 0.13–0.21, ddim 0.17–0.27, rflow 0.52–0.62.
# The strided DDPM before the fix (MONAI's t → t-1 step at every jump) missed the mean by 0.65 sd
# (K = 50) and 1.5 sd (K = 10); MONAI's DDIM (jump to t - T // K, not to the next timestep) had
# 8 % too much variance at K = 50.

T_GAUSS = 1000
GAUSS_SHAPE = (16, 16)
N_GAUSS = 64  # 64 samples × 5 channels × 16 × 16 = 81,920 independent pixels


def gauss_config(**kw) -> DiffusionModelConfig:
    kw.setdefault("objective", "epsilon")
    return DiffusionModelConfig(image_shape=GAUSS_SHAPE, train_timesteps=T_GAUSS, **kw)


def gauss_params() -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel mean in [0, 0.2] and std in [0.15, 0.22] (|x0| < 1 up to 3.5 sigma: no clipping).

    The means share a sign, so a chain that shrinks or shifts them moves the pooled mean.
    """
    numel = 5 * GAUSS_SHAPE[0] * GAUSS_SHAPE[1]
    mu = torch.linspace(0.0, 0.2, numel, dtype=torch.float64).reshape(1, 5, *GAUSS_SHAPE)
    sigma = torch.linspace(0.15, 0.22, numel, dtype=torch.float64).flip(0).reshape(1, 5, *GAUSS_SHAPE)
    return mu, sigma


class GaussEpsOracle(torch.nn.Module):
    """The exact ε-prediction E[ε | x_t] for Gaussian data (see above)."""

    def __init__(self, cfg):
        super().__init__()
        self.abar = ddpm_scheduler(cfg).alphas_cumprod.double()
        self.mu, self.sigma = gauss_params()

    def forward(self, x, t):
        a = self.abar[t].view(-1, 1, 1, 1)
        var = a * self.sigma**2 + 1 - a
        return ((1 - a).sqrt() * (x.double() - a.sqrt() * self.mu) / var).float()


class GaussVelocityOracle(torch.nn.Module):
    """The exact rectified-flow velocity E[x0 - ε | x_t] for Gaussian data (see above)."""

    def __init__(self, cfg):
        super().__init__()
        self.T = cfg.train_timesteps
        self.mu, self.sigma = gauss_params()

    def forward(self, x, t):
        s = (t.double() / self.T).view(-1, 1, 1, 1)
        var = (1 - s) ** 2 * self.sigma**2 + s**2
        return (self.mu + ((1 - s) * self.sigma**2 - s) * (x.double() - (1 - s) * self.mu) / var).float()


def gauss_cond(var_a: float, var_b: float, cov: float) -> tuple[float, float]:
    """Gaussian conditioning of a on b: (regression coefficient, residual variance)."""
    return cov / var_b, var_a - cov * cov / var_b


def chain_moments(sampler: str, steps: int, mu: float, sigma: float) -> tuple[float, float]:
    """Exact mean and variance of one pixel after ``sampler`` with ``steps`` steps and the exact oracle.

    Timesteps as in the sampler: ``round(linspace(T-1, 0, K))`` for DDPM/DDIM, each step jumps to
    the next one (ᾱ = 1 after the last); rectified flow: ``T, T - T/K, …, T/K`` then 0. Start x ~ N(0, 1).
    The ancestral reference is derived by conditioning the forward process, not from the
    sampler's coefficients: given x0, (x_t', x_t) is Gaussian with Var(x_t'|x0) = 1 - ab',
    Var(x_t|x0) = 1 - ab and Cov = sqrt(ab/ab') (1 - ab'); one step draws
    x_t' ~ q(x_t' | x_t, x0 = E[x0 | x_t]).
    """
    mean, var = 0.0, 1.0
    if sampler == "rflow":
        ts = [T_GAUSS * (1 - i / steps) for i in range(steps)] + [0.0]
        for t, t_next in zip(ts, ts[1:]):
            s, dt = round(t) / T_GAUSS, (round(t) - round(t_next)) / T_GAUSS
            v_t = (1 - s) ** 2 * sigma**2 + s**2
            k = ((1 - s) * sigma**2 - s) / v_t  # v = mu + k (x - (1-s) mu)
            mean = mean + dt * (mu + k * (mean - (1 - s) * mu))
            var = (1 + dt * k) ** 2 * var
        return mean, var
    abar = ddpm_scheduler(gauss_config()).alphas_cumprod.double().tolist()
    ts = torch.linspace(T_GAUSS - 1, 0, steps).round().long().tolist()
    for i, t in enumerate(ts):
        a = abar[t]
        a_prev = abar[ts[i + 1]] if i + 1 < len(ts) else 1.0
        v_t = a * sigma**2 + 1 - a
        m_t = a**0.5 * mu
        g = a**0.5 * sigma**2 / v_t  # E[x0|x_t] - mu = g (x_t - m_t)
        h = (1 - a) ** 0.5 / v_t  # E[eps|x_t] = h (x_t - m_t)
        if sampler == "ddim":  # x_t' = sqrt(ab') x0_hat + sqrt(1 - ab') eps_hat
            c, w = a_prev**0.5 * g + (1 - a_prev) ** 0.5 * h, 0.0
        else:
            b, w = gauss_cond(1 - a_prev, 1 - a, (a / a_prev) ** 0.5 * (1 - a_prev))
            c = a_prev**0.5 * g + b * (1 - a**0.5 * g)  # mean: sqrt(ab') x0 + b (x_t - sqrt(ab) x0)
        mean = a_prev**0.5 * mu + c * (mean - m_t)
        var = c * c * var + w
    return mean, var


@pytest.mark.parametrize(("sampler", "steps"), [("ddpm", 50), ("ddpm", 10), ("ddim", 50), ("ddim", 10),
                                                ("rflow", 50), ("rflow", 10), ("ddpm", 1000)])
def test_exact_score_on_gaussian_data_gives_the_chains_exact_moments(sampler, steps):
    """Sampled per-pixel mean = the data's; sampled variance = the discretised chain's exact variance.

    Tolerances: 81,920 pixels standardised by the exact moments; the pooled mean of z has
    standard error 0.0035 (tolerance 0.02) and its variance 0.005 (tolerance 0.03); the pooled
    bias against the data's means has standard error below 0.001 (tolerance 0.005).
    """
    cfg = gauss_config(objective="rflow") if sampler == "rflow" else gauss_config()
    oracle = GaussVelocityOracle(cfg) if sampler == "rflow" else GaussEpsOracle(cfg)
    out = sample_encoded(oracle, cfg, N_GAUSS, sampler=sampler, steps=steps, generator=make_generator(0),
                         device="cpu").double()
    mu, sigma = gauss_params()
    moments = [chain_moments(sampler, steps, m, s) for m, s in zip(mu.flatten().tolist(), sigma.flatten().tolist())]
    ref_mean = torch.tensor([m for m, _ in moments], dtype=torch.float64).reshape(mu.shape)
    ref_var = torch.tensor([v for _, v in moments], dtype=torch.float64).reshape(mu.shape)
    # the exact chain keeps the data's mean at every K (it starts from N(0, 1), not from x_T's exact marginal)
    assert (ref_mean - mu).abs().max() < 2e-3
    z = (out - ref_mean) / ref_var.sqrt()
    assert abs(float(z.mean())) < 0.02, f"{sampler}-{steps}: mean off by {float(z.mean()):.3f} sd"
    assert abs(float((out - mu).mean())) < 0.005, f"{sampler}-{steps}: bias {float((out - mu).mean()):.4f}"
    assert abs(float(z.var()) - 1) < 0.03, f"{sampler}-{steps}: variance ratio {float(z.var()):.3f}"
    if steps == T_GAUSS:  # the discretisation gap closes as K → T (ancestral K = T: 95–97 % of the data's)
        assert float((ref_var / sigma**2).min()) > 0.9


# -- the jump updates against MONAI's schedulers where those are right


def _noisy(cfg, t: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand((2, 5, 8, 8), generator=g) * 1.6 - 0.8
    eps = torch.randn(x0.shape, generator=g)
    sched = ddpm_scheduler(cfg)
    return sched, x0, eps, sched.add_noise(x0, eps, torch.full((2,), t))


@pytest.mark.parametrize("prediction", ["epsilon", "sample", "v_prediction"])
def test_split_prediction_recovers_x0_and_noise(prediction):
    cfg = config()
    sched, x0, eps, xt = _noisy(cfg, 37)
    out = {"epsilon": eps, "sample": x0, "v_prediction": sched.get_velocity(x0, eps, torch.full((2,), 37))}[prediction]
    jump = chain(sched.betas, [37])[0]
    x0_hat, eps_hat = split_prediction(out, xt, jump.abar_t, prediction)
    torch.testing.assert_close(x0_hat, x0, atol=1e-4, rtol=0)
    torch.testing.assert_close(eps_hat, eps, atol=1e-4, rtol=0)


def test_one_step_jumps_equal_monai_ddpm_and_ddim():
    """With t' = t - 1 (K = T) MONAI's DDPM and DDIM steps are right: ours must agree, noise included.

    Tolerance 5e-4 for DDPM: MONAI forms 1 - ᾱ_t in float32, ~1e-4 relative error at t <= 1
    (ours: float64 from the betas).
    """
    cfg = config()
    monai_ddim = ddim_scheduler(cfg)
    monai_ddim.set_timesteps(cfg.train_timesteps)
    for t in (99, 50, 1, 0):
        sched, x0, eps, xt = _noisy(cfg, t)
        jump = chain(sched.betas, [t, t - 1] if t else [0])[0]
        x0_hat, eps_hat = split_prediction(eps, xt, jump.abar_t)
        ref, _ = sched.step(eps, t, xt, generator=torch.Generator().manual_seed(3))
        ours = ancestral_step(xt, x0_hat.clamp(-1, 1), jump, torch.Generator().manual_seed(3))
        torch.testing.assert_close(ours, ref, atol=5e-4, rtol=0)
        ref, _ = monai_ddim.step(eps, t, xt)
        torch.testing.assert_close(ddim_step(x0_hat.clamp(-1, 1), eps_hat, jump), ref, atol=1e-5, rtol=0)


def test_strided_ancestral_jump_equals_ddim_with_eta_one():
    """q(x_t' | x_t, x0) is DDIM's η = 1 update (Song et al. 2021, eq. 16) for the same t → t'.

    (They differ only where the x0 estimate is clipped: MONAI's DDIM keeps the unclipped ε.)
    """
    cfg = gauss_config()
    monai_ddim = ddim_scheduler(cfg)
    monai_ddim.set_timesteps(50)  # MONAI jumps t → t - T // K = t - 20
    for t in (999, 500, 20):
        sched, x0, eps, xt = _noisy(cfg, t)
        jump = chain(sched.betas, [t, t - 20])[0]
        x0_hat, _ = split_prediction(eps, xt, jump.abar_t)
        ref, _ = monai_ddim.step(eps, t, xt, eta=1.0, generator=torch.Generator().manual_seed(5))
        ours = ancestral_step(xt, x0_hat.clamp(-1, 1), jump, torch.Generator().manual_seed(5))
        torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)
        assert not torch.allclose(ours, sched.step(eps, t, xt, generator=torch.Generator().manual_seed(5))[0])


def test_chain_rejects_timesteps_out_of_order():
    betas = ddpm_scheduler(config()).betas
    for bad in ([], [5, 5], [3, 7], [100], [4, -1]):
        with pytest.raises(ValueError, match="strictly decreasing"):
            chain(betas, bad)


class VOracle(torch.nn.Module):
    """The exact velocity v = sqrt(ᾱ) ε − sqrt(1 − ᾱ) x0 of ``x_t`` for X0: (sqrt(ᾱ) x_t − X0) / sqrt(1 − ᾱ)."""

    def __init__(self, cfg):
        super().__init__()
        self.abar = ddpm_scheduler(cfg).alphas_cumprod.double()

    def forward(self, x, t):
        a = self.abar[t].view(-1, 1, 1, 1)
        return ((a.sqrt() * x.double() - X0) / (1 - a).sqrt()).float()


class X0Oracle(torch.nn.Module):
    def forward(self, x, t):
        return X0.expand_as(x)


@pytest.mark.parametrize("zero_terminal_snr", [False, True])
@pytest.mark.parametrize(("objective", "oracle"), [("v", VOracle), ("x0", lambda cfg: X0Oracle())])
def test_v_and_x0_objectives_with_exact_predictions_return_the_clean_sample(objective, oracle, zero_terminal_snr):
    """DDIM from pure noise, also when the last timestep has exactly zero signal (ᾱ = 0)."""
    cfg = config(objective=objective, zero_terminal_snr=zero_terminal_snr)
    assert (float(ddpm_scheduler(cfg).alphas_cumprod[-1]) == 0.0) == zero_terminal_snr
    out = sample_encoded(oracle(cfg), cfg, 1, sampler="ddim", steps=10, generator=make_generator(0), device="cpu")
    torch.testing.assert_close(out, X0, atol=1e-4, rtol=0)
    loss = training_loss(oracle(cfg), X0.expand(4, -1, -1, -1), cfg, scheduler_for(cfg), StepRandom(0, 1))
    assert loss < 1e-6


def test_min_snr_weighting_is_the_formula():
    """Weights min(SNR, γ) / SNR (ε), / (SNR + 1) (v), and min(SNR, γ) (x0), SNR = ᾱ / (1 − ᾱ)."""
    from synthmed.generators.diffusion.schedulers import _snr_weight

    abar = torch.tensor([0.999, 0.5, 0.01, 0.0], dtype=torch.float64)
    snr = abar / (1 - abar)
    for objective, ref in (("epsilon", snr.clamp(max=5) / snr), ("v", snr.clamp(max=5) / (snr + 1)),
                           ("x0", snr.clamp(max=5))):
        got = _snr_weight(abar, objective, 5.0)
        torch.testing.assert_close(got[:3], ref[:3])
    assert float(_snr_weight(abar, "v", 5.0)[3]) == 0.0
