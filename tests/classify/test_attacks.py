"""PGD attacks: ε-balls, identities, known optima of linear models, agreement with ART, side effects."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from synthmed.classify.attacks import AttackSpec, library_pgd, library_pgd_per_label, multilabel_bce, pgd
from synthmed.errors import SynthmedError
from synthmed.training.seeding import make_generator, seeded_init

NORMS = ("linf", "l2")


def linear(k: int = 3, shape: tuple[int, ...] = (4, 8, 8), seed: int = 0) -> nn.Module:
    """logits = W·flatten(x) + b, ``[B, k]``."""
    with seeded_init(seed):
        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), k))


def conv(k: int = 3, dims: int = 2, seed: int = 0) -> nn.Module:
    """A tiny conv net on 4-channel inputs (ReLU, so the gradient changes along the attack)."""
    conv_cls = nn.Conv2d if dims == 2 else nn.Conv3d
    pool = nn.AdaptiveAvgPool2d(2) if dims == 2 else nn.AdaptiveAvgPool3d(2)
    with seeded_init(seed):
        return nn.Sequential(conv_cls(4, 6, 3, padding=1), nn.ReLU(), pool, nn.Flatten(), nn.Linear(6 * 2**dims, k))


def batch(b: int = 4, shape: tuple[int, ...] = (4, 8, 8), k: int = 3, low: float = 0.0, high: float = 1.0,
          seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = make_generator(seed)
    images = low + (high - low) * torch.rand((b, *shape), generator=gen)
    targets = (torch.rand((b, k), generator=gen) > 0.5).float()
    return images, targets


def norms(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    return flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)


def per_sample_loss(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return nn.functional.binary_cross_entropy_with_logits(model(x), t, reduction="none").mean(1)


def test_spec_is_validated_naming_the_option():
    for kwargs, field in [(dict(eps=-0.1, alpha=0.1, steps=1), "--eps"),
                          (dict(eps=0.1, alpha=0.0, steps=1), "--alpha"),
                          (dict(eps=0.1, alpha=0.1, steps=-1), "--steps"),
                          (dict(eps=0.1, alpha=0.1, steps=1.5), "--steps"),
                          (dict(eps=float("nan"), alpha=0.1, steps=1), "--eps"),
                          (dict(eps=0.1, alpha=0.1, steps=1, norm="l1"), "--norm")]:
        with pytest.raises(SynthmedError, match=field):
            AttackSpec(**kwargs)
    assert AttackSpec(eps=0.0, alpha=0.0, steps=3).is_identity  # no attack: alpha unchecked


def test_multilabel_bce_sums_over_the_batch_and_averages_over_labels():
    logits = torch.tensor([[0.0, 2.0], [-1.0, 3.0], [1.0, 0.5]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    by_hand = sum(-math.log(1 / (1 + math.exp(-z))) if t else -math.log(1 - 1 / (1 + math.exp(-z)))
                  for row_z, row_t in zip(logits.tolist(), targets.tolist(), strict=True)
                  for z, t in zip(row_z, row_t, strict=True)) / 2
    assert multilabel_bce(logits, targets).item() == pytest.approx(by_hand, rel=1e-6)
    with pytest.raises(ValueError, match="B, K"):
        multilabel_bce(logits, targets[:, :1])


@pytest.mark.parametrize("norm", NORMS)
def test_perturbation_stays_in_the_ball_and_the_unit_range(norm):
    model, (images, targets) = conv(), batch(b=6)  # images fill [0, 1]: clamping is active
    eps = 8 / 255 if norm == "linf" else 0.5
    spec = AttackSpec(eps=eps, alpha=eps / 2, steps=5, norm=norm)
    adv = pgd(model, images, targets, spec, generator=make_generator(0))
    size = norms(adv - images, norm)
    assert adv.min() >= 0 and adv.max() <= 1 and not adv.requires_grad
    assert (size <= eps * (1 + 1e-5)).all() and (size > 0.5 * eps).all()
    start = pgd(model, images, targets, AttackSpec(eps=eps, alpha=eps, steps=0, norm=norm), generator=make_generator(0))
    assert (norms(start - images, norm) <= eps * (1 + 1e-5)).all() and not torch.equal(start, images)


def test_l2_random_start_is_uniform_in_the_ball():
    # uniform in the d-ball: P(‖δ‖ ≤ r·ε) = r^d; with d = 4, the median radius is 0.5^(1/4) ε
    images = torch.full((4000, 1, 2, 2), 0.5)
    spec = AttackSpec(eps=0.2, alpha=0.1, steps=0, norm="l2")
    delta = pgd(linear(1, (1, 2, 2)), images, torch.zeros(4000, 1), spec, generator=make_generator(3)) - images
    radius = delta.flatten(1).norm(dim=1) / 0.2
    assert radius.max() <= 1 + 1e-5 and abs(radius.median().item() - 0.5 ** 0.25) < 0.02
    direction = delta.flatten(1) / delta.flatten(1).norm(dim=1, keepdim=True)
    assert direction.mean(0).abs().max() < 0.05  # isotropic


@pytest.mark.parametrize("norm", NORMS)
def test_no_attack_is_the_identity(norm):
    model, (images, targets) = conv(), batch()
    for spec in (AttackSpec(eps=0.0, alpha=0.0, steps=5, norm=norm),
                 AttackSpec(eps=0.1, alpha=0.1, steps=0, norm=norm, random_start=False)):
        assert torch.equal(pgd(model, images, targets, spec), images)
        assert torch.equal(library_pgd(model, images, targets, spec, seed=0), images)


@pytest.mark.parametrize("norm", NORMS)
def test_more_steps_raise_the_loss_on_a_linear_model(norm):
    model, (images, targets) = linear(), batch(b=8, low=0.2, high=0.8)
    eps = 0.05 if norm == "linf" else 0.5
    one = pgd(model, images, targets, AttackSpec(eps=eps, alpha=eps / 4, steps=1, norm=norm, random_start=False))
    ten = pgd(model, images, targets, AttackSpec(eps=eps, alpha=eps / 4, steps=10, norm=norm, random_start=False))
    clean, l1, l10 = (per_sample_loss(model, x, targets) for x in (images, one, ten))
    assert (l1 > clean).all() and (l10 >= l1 - 1e-6).all() and (l10 > l1).any()


def test_l2_steps_follow_the_gradient_not_its_sign():
    model, (images, targets) = conv(), batch(low=0.3, high=0.7)
    spec = AttackSpec(eps=1.0, alpha=0.1, steps=1, norm="l2", random_start=False)  # one step, inside the ball
    delta = pgd(model, images, targets, spec) - images
    x = images.clone().requires_grad_(True)
    multilabel_bce(model(x), targets).backward()
    g = x.grad.flatten(1)
    expected = 0.1 * g / g.norm(dim=1, keepdim=True)
    torch.testing.assert_close(delta.flatten(1), expected, atol=1e-6, rtol=1e-4)
    assert delta.flatten(1).abs().unique().numel() > 100  # not ±alpha-valued
    cos_sign = nn.functional.cosine_similarity(delta.flatten(1), g.sign(), dim=1)
    assert (cos_sign < 0.99).all()


@pytest.mark.parametrize("norm", NORMS)
def test_linear_model_reaches_the_known_optimum(norm):
    # one logit z = w·x + b, target 1: the loss softplus(−z) is maximised by the δ minimising w·δ,
    # −ε·w/‖w‖ in L2 and −ε·sign(w) in L∞ (inputs and ε keep x + δ inside [0, 1])
    model, images = linear(k=1), batch(b=3, low=0.4, high=0.6)[0]
    targets = torch.ones(3, 1)
    w = model[1].weight.detach()[0]
    eps = 0.5 if norm == "l2" else 0.02
    optimum = -eps * (w / w.norm() if norm == "l2" else w.sign())
    spec = AttackSpec(eps=eps, alpha=eps / 3, steps=5, norm=norm, random_start=False)  # 5 steps overshoot: projection
    delta = (pgd(model, images, targets, spec) - images).flatten(1)
    torch.testing.assert_close(delta, optimum.expand_as(delta), atol=1e-6, rtol=1e-4)
    # brute force: no point of 2000 random ones on the ball's boundary does better
    gen = make_generator(5)
    if norm == "l2":
        cand = torch.randn(2000, w.numel(), generator=gen)
        cand = eps * cand / cand.norm(dim=1, keepdim=True)
    else:
        cand = eps * (2 * (torch.rand(2000, w.numel(), generator=gen) > 0.5).float() - 1)
    assert (cand @ w).min() > (delta @ w).max() - 1e-6


@pytest.mark.parametrize("k", [3, 1])
@pytest.mark.parametrize("norm", NORMS)
def test_ours_agrees_with_art(norm, k):
    # same start (none), eps, alpha, steps; k = 1 goes through ART's two-class cross-entropy.
    # L∞ on images filling [0, 1] (clamping active): clip-to-box and clamp commute, so the
    # orders agree (bit-identical here; tolerance 1e-6). L2: ART clamps then projects, we
    # project then clamp, which differ where an iterate leaves [0, 1] (by ~1e-2 on full-range
    # images); inputs in [0.25, 0.75] with ε = 0.5 keep every iterate inside, and the results
    # agree to float rounding (6e-8 here; tolerance 1e-6), the losses to 1e-5.
    low, high = (0.0, 1.0) if norm == "linf" else (0.25, 0.75)
    model, (images, targets) = conv(k=k).eval(), batch(b=5, k=k, low=low, high=high)
    eps = 8 / 255 if norm == "linf" else 0.5
    spec = AttackSpec(eps=eps, alpha=eps / 4, steps=6, norm=norm, random_start=False)
    ours = pgd(model, images, targets, spec)
    theirs = library_pgd(model, images, targets, spec, seed=0)
    torch.testing.assert_close(theirs, ours, atol=1e-6, rtol=0)
    assert torch.allclose(per_sample_loss(model, theirs, targets), per_sample_loss(model, ours, targets), atol=1e-5)
    assert (per_sample_loss(model, ours, targets) > per_sample_loss(model, images, targets)).all()


def test_art_per_label_attacks_each_label_alone():
    model, (images, targets) = conv(k=3).eval(), batch(b=4, low=0.25, high=0.75)
    spec = AttackSpec(eps=8 / 255, alpha=2 / 255, steps=4, norm="linf", random_start=False)
    rows = library_pgd_per_label(model, images, targets, spec, seed=0)
    assert rows.shape == (3, *images.shape)
    for k in range(3):
        def label_k(logits, t, k=k):
            return nn.functional.binary_cross_entropy_with_logits(logits[:, k], t[:, k], reduction="sum")
        torch.testing.assert_close(rows[k], pgd(model, images, targets, spec, loss_fn=label_k), atol=1e-6, rtol=0)
    assert not torch.allclose(rows[0], rows[1])


@pytest.mark.parametrize("norm", NORMS)
def test_art_random_start_is_seeded_and_in_the_ball(norm):
    model, (images, targets) = conv(), batch()
    eps = 8 / 255 if norm == "linf" else 0.5
    spec = AttackSpec(eps=eps, alpha=eps / 4, steps=2, norm=norm)
    a = library_pgd(model, images, targets, spec, seed=3, batch_size=3)
    assert torch.equal(a, library_pgd(model, images, targets, spec, seed=3, batch_size=3))
    # the batch size changes only float rounding (the conv's summation order)
    torch.testing.assert_close(a, library_pgd(model, images, targets, spec, seed=3), atol=1e-6, rtol=0)
    assert not torch.equal(a, library_pgd(model, images, targets, spec, seed=4))
    assert (norms(a - images, norm) <= eps * (1 + 1e-5)).all() and a.min() >= 0 and a.max() <= 1


def _side_effects_checked(attack):
    """Run ``attack(model, images, targets)`` on a train-mode BN model with a stale .grad; check nothing moved."""
    with seeded_init(0):
        model = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(256, 3))
    model.train()
    model[1].eval()  # BN in eval mode: the attack must leave this mixture as it is
    stale = torch.full_like(model[3].weight, 7.0)
    model[3].weight.grad = stale
    model[0].bias.requires_grad_(False)
    images, targets = batch()
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    attack(model, images, targets)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), np_state, strict=True))
    assert [m.training for m in model.modules()] == [True, True, False, True, True]
    assert model[3].weight.grad is stale and model[0].weight.grad is None and model[1].weight.grad is None
    assert not model[0].bias.requires_grad and model[0].weight.requires_grad


def test_pgd_is_reproducible_and_leaves_the_model_and_global_rng_alone():
    spec = AttackSpec(eps=0.5, alpha=0.2, steps=3, norm="l2")
    model, (images, targets) = conv(), batch()
    a = pgd(model, images, targets, spec, generator=make_generator(11))
    assert torch.equal(a, pgd(model, images, targets, spec, generator=make_generator(11)))
    assert not torch.equal(a, pgd(model, images, targets, spec, generator=make_generator(12)))
    with torch.no_grad():  # works inside a caller's no_grad block
        assert torch.equal(a, pgd(model, images, targets, spec, generator=make_generator(11)))
    _side_effects_checked(lambda m, x, t: pgd(m, x, t, spec, generator=make_generator(0)))
    with pytest.raises(ValueError, match="Generator"):
        pgd(model, images, targets, spec)


def test_library_pgd_leaves_the_model_and_global_rngs_alone():
    spec = AttackSpec(eps=8 / 255, alpha=2 / 255, steps=2, norm="linf")
    _side_effects_checked(lambda m, x, t: library_pgd(m, x, t, spec, seed=0))
    _side_effects_checked(lambda m, x, t: library_pgd_per_label(m, x, t, spec, seed=0))


def test_a_sample_does_not_depend_on_its_batch():
    model, (images, targets) = conv(), batch(b=4)
    spec = AttackSpec(eps=0.5, alpha=0.2, steps=3, norm="l2", random_start=False)
    whole = pgd(model, images, targets, spec)
    alone = torch.cat([pgd(model, images[i:i + 1], targets[i:i + 1], spec) for i in range(4)])
    torch.testing.assert_close(whole, alone, atol=1e-6, rtol=0)


@pytest.mark.parametrize("norm", NORMS)
def test_volumes(norm):
    shape = (4, 4, 6, 6)
    model, (images, targets) = conv(k=2, dims=3).eval(), batch(b=3, shape=shape, k=2, low=0.25, high=0.75)
    eps = 8 / 255 if norm == "linf" else 0.5
    spec = AttackSpec(eps=eps, alpha=eps / 4, steps=4, norm=norm, random_start=False)
    ours = pgd(model, images, targets, spec)
    assert ours.shape == images.shape and (norms(ours - images, norm) <= eps * (1 + 1e-5)).all()
    assert (per_sample_loss(model, ours, targets) > per_sample_loss(model, images, targets)).all()
    torch.testing.assert_close(library_pgd(model, images, targets, spec, seed=0), ours, atol=1e-6, rtol=0)
    rand = pgd(model, images, targets, AttackSpec(eps=eps, alpha=eps / 4, steps=2, norm=norm),
               generator=make_generator(0))
    assert (norms(rand - images, norm) <= eps * (1 + 1e-5)).all()


@pytest.mark.parametrize("norm", NORMS)
def test_training_attack_splits_over_ranks_like_one_process(norm):
    """The training attack of K processes with batch B is one process's with batch K·B: each rank's
    random start is its rows of one world-size-invariant draw (two ranks never share a start)."""
    from synthmed.classify.config import ClassifierModelConfig, ClassifierTrainConfig
    from synthmed.classify.task import ClassificationTask
    from synthmed.training.seeding import StepRandom

    eps = 0.05 if norm == "linf" else 0.5
    task = ClassificationTask(ClassifierModelConfig(mode="adversarial"),
                              ClassifierTrainConfig(eps=eps, alpha=eps / 4, attack_steps=3, norm=norm), seed=0)
    task.model = conv(k=1)
    images, targets = batch(b=8, k=1)
    whole = task.adversarial_examples(images, targets, StepRandom(0, 5))
    halves = [task.adversarial_examples(images[r * 4:(r + 1) * 4], targets[r * 4:(r + 1) * 4],
                                        StepRandom(0, 5, rank=r, world_size=2)) for r in (0, 1)]
    assert torch.allclose(torch.cat(halves), whole, atol=1e-6)
    starts = [task.adversarial_examples(images[:4], targets[:4], StepRandom(0, 5, rank=r, world_size=2))
              for r in (0, 1)]
    assert not torch.allclose(starts[0], starts[1])
