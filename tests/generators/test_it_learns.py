"""Every generator family *learns*: briefly trained on a small, simple store, its samples match the data.

The store (``learning_store.make_learning_store``: 80 training samples of 16 px, an ellipse
brain with four channels of distinct intensity and a three-label tumour on an exact-zero
background) is simple enough that a working generator at its ``tiny`` preset gets its
statistics right within a CPU minute, and a broken one does not. Each family trains with the
preset's networks and losses (only steps, batch, learning rate, growth phase, for StyleGAN 2
and 3 R1 γ, and for ldm its autoencoder kind and discriminator start set here) and draws 64
samples, compared with the training split (:mod:`synthmed.metrics.sample_stats`):

* background (mean image value outside the brain) within 0.08 of the data's (0.0; 0.08 in [0, 1] is −0.84 in
  the encoded [−1, 1]: the ddpm that learned measured 0.045 (−0.91) and, on a fresh install with 1 or 2 threads,
  0.062; the broken ε-prediction 0.43, i.e. −0.13 encoded);
* brain area share within 0.1 of the data's (0.38);
* per-channel mean intensity inside the brain within 0.1 of the data's (0.35 … 0.81);
* each label's pixel share within half the data's share + 0.01 (data: NCR 0.014, ED 0.082,
  ET 0.042), and above 0 — a background decoded as NCR, or a label that never appears, fails;
* diversity: mean pairwise MS-SSIM at most the data's (0.77) + 0.1 — a collapsed generator
  scores near 1;
* ddpm, rflow and ldm also: pooled-feature FD against the training split at most a quarter of
  the FD of the same run's samples after its first step (ldm: its denoiser's first step, over
  the trained autoencoder).

Every test process computes with one thread (``tests/conftest.py``), so each test is one
reproducible run: GAN training is chaotic, and another thread count (another summation order)
is another run, which for StyleGAN 1 has collapsed once (see ``BUDGETS``).

Before the schedule fix (``tiny``: ε-prediction, T = 200 with the linear schedule made for
T = 1000, whose forward process stops at sqrt(ᾱ) = 0.36), the ddpm test failed here: grey
background, labels everywhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from learning_store import make_learning_store
from synthmed.generators.api import train_generator
from synthmed.generators.registry import generator_class
from synthmed.metrics.sample_stats import SampleStats, pooled_fd, sample_stats

N_SAMPLES = 64

#: family → (preset overrides: model, train). Steps chosen so each test is about a minute on a 2-core CPU (StyleGANs: longer).
BUDGETS: dict[str, tuple[dict, dict]] = {
    # ddpm at 600 steps sits on the tolerances' edge: a different thread count or seed moved channel 3's brain mean
    # to 0.65-0.71 (against 0.81). At 1,200 steps seeds 1 and 2 pass with margin (channels within 0.06, background
    # 0.048-0.055), about 80 s.
    "ddpm": ({}, {"steps": 1200, "batch": 16, "lr": 2e-3}),
    "rflow": ({"objective": "rflow"}, {"steps": 600, "batch": 16, "lr": 2e-3}),
    # ProGAN without the mirror: since the fix (reals mirrored, fakes not) it must learn the data and its mirror
    # images, and at 600 steps with 2 threads channel 3 sat on the edge (0.713 against 0.814); this test asks whether
    # it learns this store. Without the mirror it passes in about 20 s.
    "progan": ({}, {"steps": 600, "batch": 16, "growth_steps": 60, "mirror": False}),
    # StyleGAN 1 at StyleGAN 2's budget with its paper's R1 gamma = 10 (now its tiny preset's). With one thread (as
    # every test computes, tests/conftest.py) seeds 0-3 learn: MS-SSIM 0.85, 0.75, 0.76, 0.86 (seed 0 without style
    # mixing 0.86). Seed 0 with two threads collapsed (0.94): another summation order, another outcome, so it is
    # the family nearest the edge. At gamma 1 and 4 it collapsed: MS-SSIM 0.87-0.97 at 1,200-2,400 steps, tumour
    # positions spread 0.3-0.6 px against the data's 1.4.
    "stylegan1": ({}, {"steps": 2400, "batch": 16, "growth_steps": 60}),
    # StyleGAN 2 needs a longer budget and a stronger R1 than its tiny preset's γ = 1: measured at 1,200 steps
    # γ = 1 and 4 collapse (MS-SSIM 0.89-0.95); at 2,400 steps γ = 4 passes (MS-SSIM 0.84 and 0.83 with
    # seeds 0 and 1) while γ = 10 still collapses (0.90). 489 s on 2 cores (measured beside other work): over the
    # 60 s of the others, the price of a StyleGAN that is shown to learn.
    "stylegan2": ({}, {"steps": 2400, "batch": 16, "r1_gamma": 4.0}),
    # StyleGAN 3 learns at StyleGAN 2's budget once fakes are no longer mirrored and the tiny preset's output scale
    # is 1 (NVlabs' 0.25 left the background grey): MS-SSIM 0.73, channel means within 0.02 (165 s, one thread).
    # Without style mixing (as NVlabs trains it) it passed with one thread and failed with two (NCR share 0.031
    # against 0.014), so its presets keep style mixing 0.9.
    "stylegan3": ({}, {"steps": 2400, "batch": 16, "r1_gamma": 4.0}),
    # Latent diffusion: the autoencoder stage 800 steps, then the latent ddpm 1,200, about 100 s with one thread.
    # The tiny preset's discriminators start at step 2 (so that unit tests reach them); here they stay off, and the
    # autoencoder is the kl one. Measured (seed 0, autoencoder reconstructions of the training split): with the
    # discriminators from step 2 PSNR 13.7 dB, brain share 0.71, MS-SSIM 0.92 (the samples fail alike); without them
    # the tiny VQ (32 codes) reaches 22.0 dB but decodes no NCR at all (share 0), and its samples neither; kl 25.0 dB,
    # every label present, samples MS-SSIM 0.83, channels within 0.04.
    "ldm": ({"autoencoder.kind": "kl"}, {"autoencoder.steps": 800, "autoencoder.batch": 16, "autoencoder.lr": 2e-3,
                                         "autoencoder.disc_start": 100_000, "steps": 1200, "batch": 16, "lr": 2e-3}),
}
#: Families whose samples are also compared in pooled-feature FD with the same network's before training.
DIFFUSION = ("ddpm", "rflow", "ldm")

#: Seconds a test takes at one thread, two workers on an idle 2-core CPU, as measured (how tests/conftest.py shares them between workers).
SECONDS = {"stylegan3": 360, "stylegan2": 230, "stylegan1": 180, "ddpm": 125, "ldm": 120, "rflow": 60, "progan": 35}

#: Known failures, measured (a strict xfail: the day one learns, its test fails until the mark goes).
KNOWN: dict[str, str] = {}


@pytest.fixture(scope="module")
def learning_store(tmp_path_factory: pytest.TempPathFactory):
    return make_learning_store(tmp_path_factory.mktemp("learn") / "store")


def train_and_sample(store, run: Path, family: str, *, steps: int | None = None,
                     resume: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Train ``family`` at its budget (or for ``steps`` steps; ``ldm``: of its diffusion stage) into ``run``
    (continuing it with ``resume``) and draw :data:`N_SAMPLES` samples."""
    model, train = BUDGETS[family]
    name = "ddpm" if family in ("ddpm", "rflow") else family
    train = dict(train, checkpoint_every=100_000, **({"steps": steps} if steps else {}))
    train_generator(store.path, run, model=name, preset="tiny", model_overrides=model, train_overrides=train,
                    seed=0, resume=resume, progress=False)
    gen = generator_class(name).load(run, device="cpu")
    images, labels = zip(*gen.sample(N_SAMPLES, 1, batch_size=32))
    return torch.cat(images).numpy(), torch.cat(labels).numpy()


def mismatches(real: SampleStats, syn: SampleStats) -> list[str]:
    """What differs beyond the tolerances of the module docstring (empty: it learned)."""
    bad = []
    if abs(syn.background - real.background) > 0.08:
        bad.append(f"background {syn.background:.3f} vs {real.background:.3f}")
    if abs(syn.brain_fraction - real.brain_fraction) > 0.1:
        bad.append(f"brain share {syn.brain_fraction:.3f} vs {real.brain_fraction:.3f}")
    for c, (s, r) in enumerate(zip(syn.brain_mean, real.brain_mean)):
        if abs(s - r) > 0.1:
            bad.append(f"channel {c} brain mean {s:.3f} vs {r:.3f}")
    for k, (s, r) in enumerate(zip(syn.label_fractions, real.label_fractions), start=1):
        if abs(s - r) > 0.5 * r + 0.01 or s == 0:
            bad.append(f"label {k} share {s:.4f} vs {r:.4f}")
    if syn.ms_ssim is None or syn.ms_ssim > real.ms_ssim + 0.1:
        bad.append(f"MS-SSIM {syn.ms_ssim} vs {real.ms_ssim:.3f} (collapse)")
    return bad


@pytest.mark.parametrize("family", [
    pytest.param(f, marks=[pytest.mark.slow(seconds=SECONDS[f]),
                           *([pytest.mark.xfail(reason=KNOWN[f], strict=True)] if f in KNOWN else [])])
    for f in BUDGETS])
def test_generator_learns_the_data(family, learning_store, tmp_path):
    real = learning_store.read(learning_store.indices("train"))
    run = tmp_path / "run"
    if family in DIFFUSION:  # the same run after one step, then continued to its budget (ldm: one autoencoder)
        untrained = train_and_sample(learning_store, run, family, steps=1)
    images, labels = train_and_sample(learning_store, run, family, resume=family in DIFFUSION)
    real_stats, syn_stats = sample_stats(*real), sample_stats(images, labels)
    bad = mismatches(real_stats, syn_stats)
    if family in DIFFUSION:
        fd, fd0 = pooled_fd(real, (images, labels)), pooled_fd(real, untrained)
        if fd > 0.25 * fd0:
            bad.append(f"pooled FD {fd:.3f} vs {fd0:.3f} after one step")
    assert not bad, f"{family} did not learn: " + "; ".join(bad)
