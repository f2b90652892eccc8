"""PGD attacks on multi-label classifiers: our own for adversarial training, ART's for evaluation.

A classifier maps images ``[B, C, *spatial]`` (float, in [0, 1]; 2D ``[B, C, H, W]`` or 3D
``[B, C, D, H, W]``) to logits ``[B, K]``, trained as K independent sigmoids; targets are float
``[B, K]`` in {0, 1}. Both attacks are **untargeted**: they maximise :func:`multilabel_bce`
(BCE of every label, summed over the batch and averaged over the labels) inside the ε-ball of
each sample, and return images clamped to [0, 1].

* :func:`pgd` (training; Madry et al. 2018): ``steps`` steps of size ``alpha`` from a random
  start, projected onto the ball after each step. L∞: uniform start in [−ε, ε] per element,
  sign steps, clip to the box. L2 (true L2 PGD, not sign steps): start uniform in the L2 ball
  (Gaussian direction, radius ε·U^{1/d}, d = C·∏spatial), steps ``alpha·g/‖g‖₂`` per sample
  (no step where ‖g‖ = 0), projection ``δ·min(1, ε/‖δ‖₂)``. Every step is projected *then*
  clamped to [0, 1]; clamping is a projection onto a convex set that contains the clean image,
  so it never leaves the ball. The only randomness is the caller's ``generator`` (a
  ``torch.Generator`` or a :class:`~synthmed.training.seeding.Draws`; ``Draws`` and
  ``GeneratorDraws`` are importable from here too).
* :func:`library_pgd` / :func:`library_pgd_per_label` (evaluation): the same attack run by the
  adversarial-robustness-toolbox (ART), an independent implementation.

The caller chooses the network's mode and batch-norm route: :func:`pgd` forwards through
``model`` as it is (in train mode, batch norm would update its running statistics on the
attack's forward passes); :func:`craft` runs it as the paper does, in eval mode through the
batch norm of a given route (the adversarial BN for training). ART always crafts in eval mode;
the library functions put every module's mode back afterwards.

**How ART treats multi-label targets** (ART 1.20.1, read from its source and checked):
``PyTorchClassifier(loss=BCEWithLogitsLoss(), nb_classes=K)`` *coerces* the labels: for
K ≥ 2 ``reduce_labels`` turns a multi-hot ``y [N, K]`` into ``argmax(y, 1)`` of shape
``[N]``, and the BCE then fails on the shape (``Target size [N] must be the same as input
size [N, K]``); K = 1 is refused (``nb_classes must be greater than or equal to 2``). A loss
that is *not* one of the torch losses ART recognises (CE, NLL, MultiMargin, BCE) is left
alone: ``y [N, K]`` passes ``check_and_transform_label_format`` unchanged (it looks one-hot)
and reaches the loss as given. So :func:`library_pgd` gives ART :func:`multilabel_bce` as
such a loss: ART then maximises exactly what :func:`pgd` maximises, the joint BCE of all K
labels. A 1-output model (``presence``) is shown to ART as two class logits ``[0, z]``: the
cross-entropy of those with class ``t`` is ``BCE(z, t)`` exactly. :func:`library_pgd_per_label`
attacks each label alone that way (ART maximises ``BCE(z_k, t_k)`` only), one adversarial
batch per label. ART's "success rate" (logged at INFO level) is arg-max accuracy, which means
nothing for multi-label outputs; only the returned images are used.

AutoAttack is not offered: its DLR loss is ``−(z_y − max_{i≠y} z_i)/(z_π1 − z_π3)`` and
needs ≥ 3 classes (ART indexes the third-largest logit, which a binary ``[0, z]`` pair lacks),
and its ensemble keeps, per sample, the attack that flips the *arg-max*, which has no meaning
for K independent labels. What would remain (APGD-CE alone) is not AutoAttack.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from synthmed.classify.dual_bn import Route, bn_route
from synthmed.classify.modes import eval_mode
from synthmed.errors import SynthmedError
from synthmed.training.seeding import Draws, GeneratorDraws

Norm = Literal["linf", "l2"]
NORMS: tuple[str, ...] = ("linf", "l2")

#: ``loss_fn(logits [B, K], targets [B, K]) -> scalar`` that the attack maximises.
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class AttackSpec:
    """An ε-ball attack: ``steps`` steps of size ``alpha`` inside radius ``eps`` in ``norm``.

    ``eps`` and ``alpha`` are in image units (images lie in [0, 1]; e.g. ε = 4/255 for L∞).
    ``eps == 0`` is no attack (``alpha`` is then not checked). ``random_start`` starts from a
    uniform draw in the ball instead of the clean image.
    """

    eps: float
    alpha: float
    steps: int
    norm: Norm = "linf"
    random_start: bool = True

    def __post_init__(self) -> None:
        if not (isinstance(self.eps, (int, float)) and math.isfinite(self.eps) and self.eps >= 0):
            raise SynthmedError(f"--eps must be a finite number >= 0, got {self.eps!r}")
        if self.eps > 0 and not (isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha)
                                 and self.alpha > 0):
            raise SynthmedError(f"--alpha must be a finite number > 0 when --eps > 0, got {self.alpha!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise SynthmedError(f"--steps must be an integer >= 0, got {self.steps!r}")
        if self.norm not in NORMS:
            raise SynthmedError(f"--norm must be one of {', '.join(NORMS)}, got {self.norm!r}")

    @property
    def is_identity(self) -> bool:
        """True when the attack returns its input unchanged (ε = 0, or no step and no random start)."""
        return self.eps == 0 or (self.steps == 0 and not self.random_start)


def multilabel_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits of ``logits [B, K]`` against ``targets [B, K]``, summed over B, averaged over K.

    Summing over the batch makes a sample's gradient independent of the batch size; the loss
    is computed in float32 (or the logits' wider dtype).
    """
    if logits.shape != targets.shape or logits.ndim != 2:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must both be [B, K]")
    dtype = torch.promote_types(logits.dtype, torch.float32)
    loss = nn.functional.binary_cross_entropy_with_logits(logits.to(dtype), targets.to(dtype), reduction="sum")
    return loss / logits.shape[1]


def _check_batch(images: torch.Tensor, targets: torch.Tensor) -> None:
    if images.ndim < 3:
        raise ValueError(f"images must be [B, C, *spatial], got shape {tuple(images.shape)}")
    if targets.ndim != 2 or targets.shape[0] != images.shape[0]:
        raise ValueError(f"targets must be [B, K] with B = {images.shape[0]}, got shape {tuple(targets.shape)}")


def _l2_norms(x: torch.Tensor) -> torch.Tensor:
    """‖x_b‖₂ over all of C × spatial, shaped ``[B, 1, …, 1]`` to broadcast against ``x``."""
    return torch.linalg.vector_norm(x.flatten(1), dim=1).reshape(-1, *([1] * (x.ndim - 1)))


def _random_start(images: torch.Tensor, spec: AttackSpec, draws: Draws) -> torch.Tensor:
    """A uniform draw δ in the ε-ball of each sample (drawn where ``draws`` draws, moved to the images' device)."""
    shape = images.shape
    if spec.norm == "linf":
        delta = (2 * draws.rand(shape, images.dtype).to(images.device) - 1) * spec.eps
    else:
        direction = draws.randn(shape, images.dtype).to(images.device)
        u = draws.rand((shape[0],), images.dtype).to(images.device)
        d = math.prod(shape[1:])
        radius = spec.eps * u.pow(1.0 / d).reshape(-1, *([1] * (len(shape) - 1)))
        delta = direction / _l2_norms(direction).clamp_min(torch.finfo(images.dtype).tiny) * radius
    return delta


def _project(delta: torch.Tensor, spec: AttackSpec) -> torch.Tensor:
    """δ projected onto the ε-ball of each sample: clipped (L∞) or scaled by min(1, ε/‖δ‖₂) (L2)."""
    if spec.norm == "linf":
        return delta.clamp(-spec.eps, spec.eps)
    norms = _l2_norms(delta)
    return delta * torch.where(norms > spec.eps, spec.eps / norms.clamp_min(torch.finfo(delta.dtype).tiny), 1.0)


def _ascent_direction(grad: torch.Tensor, norm: Norm) -> torch.Tensor:
    """The steepest-ascent unit step: sign(g) for L∞, g/‖g‖₂ per sample for L2 (0 where g = 0)."""
    if norm == "linf":
        return grad.sign()
    norms = _l2_norms(grad)
    return torch.where(norms > 0, grad / norms.clamp_min(torch.finfo(grad.dtype).tiny), 0.0)


def pgd(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    targets: torch.Tensor,
    spec: AttackSpec,
    *,
    generator: torch.Generator | Draws | None = None,
    loss_fn: LossFn | None = None,
) -> torch.Tensor:
    """Untargeted PGD: adversarial images ``[B, C, *spatial]`` (detached, in [0, 1]) for ``images``.

    Maximises ``loss_fn(model(x_adv), targets)`` (default :func:`multilabel_bce`) with
    ``‖x_adv − images‖ ≤ spec.eps`` per sample in ``spec.norm`` (L∞ elementwise, L2 over all
    of C × spatial; up to float rounding). ``spec.is_identity`` returns a copy of ``images``.

    Args:
        model: ``images → logits [B, K]``, used as it is: the caller sets train/eval mode and
            the batch-norm route (see the module docstring). Only input gradients are taken
            (``torch.autograd.grad``); no parameter's ``.grad`` is written.
        images: float ``[B, C, *spatial]`` in [0, 1].
        targets: ``[B, K]`` labels in {0, 1} (any dtype; cast to the loss dtype).
        spec: the attack.
        generator: the only source of randomness, required when ``spec.random_start`` (the
            global RNG is never touched): a ``torch.Generator`` (the start is drawn on its
            device, so a CPU generator gives the same start on any device) or any
            :class:`Draws`, e.g. a training step's
            :class:`~synthmed.training.seeding.StepRandom`, whose ranks draw their rows of one
            start (K processes with batch B attack like one with batch K·B).
        loss_fn: ``(logits, targets) → scalar`` to maximise instead of :func:`multilabel_bce`.
    """
    _check_batch(images, targets)
    clean = images.detach()
    if spec.is_identity:
        return clean.clone()
    loss_fn = multilabel_bce if loss_fn is None else loss_fn
    if spec.random_start:
        if generator is None:
            raise ValueError("pgd with spec.random_start needs a seeded torch.Generator")
        draws = GeneratorDraws(generator) if isinstance(generator, torch.Generator) else generator
        x_adv = (clean + _random_start(clean, spec, draws)).clamp(0, 1)
    else:
        x_adv = clean.clone()
    for _ in range(spec.steps):
        x_adv.requires_grad_(True)
        with torch.enable_grad():
            loss = loss_fn(model(x_adv), targets)
            (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach() + spec.alpha * _ascent_direction(grad, spec.norm)
        x_adv = (clean + _project(x_adv - clean, spec)).clamp(0, 1)
    return x_adv.detach()


def craft(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    spec: AttackSpec,
    *,
    route: Route,
    generator: torch.Generator | Draws | None = None,
) -> torch.Tensor:
    """:func:`pgd` examples ``[B, C, *spatial]`` of ``images`` crafted as the paper does: ``model`` in eval
    mode (every module's mode restored after, :func:`~synthmed.classify.modes.eval_mode`), its dual
    batch norms routed through ``route`` (:func:`~synthmed.classify.dual_bn.bn_route`; a network
    without dual BN is unaffected by the route). Arguments as :func:`pgd`'s.
    """
    with eval_mode(model), bn_route(route):
        return pgd(model, images, targets, spec, generator=generator)


# --- evaluation through the adversarial-robustness-toolbox ------------------------------------


class _JointBCE(nn.Module):
    """:func:`multilabel_bce` as a loss ART does not recognise, so it passes ``y [N, K]`` through."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return multilabel_bce(logits, targets)


class _LabelAsTwoClasses(nn.Module):
    """Label ``k`` of ``model`` as two class logits ``[0, z_k]`` (softmax-CE on them = BCE on z_k)."""

    def __init__(self, model: nn.Module, k: int):
        super().__init__()
        self.model, self.k = model, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.model(x)[:, self.k]
        return torch.stack([torch.zeros_like(z), z], dim=1)


def _model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    params = list(model.parameters())
    return params[0].device if params else fallback


@contextmanager
def _art_sandbox(model: nn.Module, seed: int, device: torch.device) -> Iterator[None]:
    """Undo what ART does to the caller's world: modes, parameter grads, global RNGs, CUDA device.

    ART sets eval mode, zeroes (``None``) and back-propagates into parameter grads, draws its
    random start from NumPy's global RNG (seeded here with ``seed``) and advances torch's CPU
    RNG (its DataLoader draws a base seed). All of it is restored on exit; parameters stop
    requiring grad inside, so ART's backward computes input gradients only.
    """
    params = list(model.parameters())
    saved = [(p.requires_grad, p.grad) for p in params]
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        np.random.seed(int(seed) % 2**32)
        cuda = torch.cuda.device(device) if device.type == "cuda" else None
        try:
            for p in params:
                p.requires_grad_(False)
            with eval_mode(model), cuda if cuda is not None else nullcontext():
                yield
        finally:
            np.random.set_state(np_state)
            for p, (requires_grad, grad) in zip(params, saved, strict=True):
                p.requires_grad_(requires_grad)
                p.grad = grad


def _art_pgd(module: nn.Module, loss: nn.Module, nb_classes: int, images: torch.Tensor, y: np.ndarray,
             spec: AttackSpec, batch_size: int, device: torch.device) -> torch.Tensor:
    """ART's ``ProjectedGradientDescent`` on ``module`` (already inside :func:`_art_sandbox`)."""
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    classifier = PyTorchClassifier(model=module, loss=loss, input_shape=tuple(images.shape[1:]),
                                   nb_classes=nb_classes, clip_values=(0.0, 1.0),
                                   device_type="gpu" if device.type == "cuda" else "cpu")
    attack = ProjectedGradientDescent(classifier, norm=np.inf if spec.norm == "linf" else 2,
                                      eps=float(spec.eps), eps_step=float(spec.alpha), max_iter=spec.steps,
                                      targeted=False, num_random_init=int(spec.random_start),
                                      batch_size=batch_size, verbose=False)
    x = images.detach().to("cpu", torch.float32).numpy()
    adv = attack.generate(x=x, y=y)
    return torch.from_numpy(adv).to(images.device, images.dtype).clamp(0, 1)


def _check_library_args(images: torch.Tensor, targets: torch.Tensor, batch_size: int) -> None:
    _check_batch(images, targets)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


def library_pgd(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    spec: AttackSpec,
    *,
    seed: int,
    batch_size: int = 64,
) -> torch.Tensor:
    """ART's PGD on the joint multi-label loss: adversarial images ``[B, C, *spatial]`` in [0, 1].

    ART maximises :func:`multilabel_bce` of all K labels (for K = 1 through the ``[0, z]``
    two-class view, which is the same loss), crafting in eval mode (modes are restored after).
    It steps, clamps to [0, 1] and then projects, which for L∞ is the same as :func:`pgd` and for
    L2 differs only where a step crosses the [0, 1] bounds. ``spec.steps == 0`` or
    ``spec.eps == 0`` returns a copy of ``images`` (ART draws its random start inside the first
    step). The random start comes from ``seed`` only; no global RNG, mode or ``.grad`` changes.

    Args:
        model: ``images → logits [B, K]``; its parameters' device is used (else the images').
        images: float ``[B, C, *spatial]`` in [0, 1].
        targets: ``[B, K]`` labels in {0, 1}.
        spec: the attack.
        seed: seeds ART's random start.
        batch_size: samples per ART batch (the result does not depend on it).
    """
    _check_library_args(images, targets, batch_size)
    if spec.is_identity or spec.steps == 0:
        return images.detach().clone()
    device = _model_device(model, images.device)
    k = targets.shape[1]
    with _art_sandbox(model, seed, device):
        if k == 1:
            y = targets[:, 0].detach().cpu().numpy().round().astype(np.int64)
            return _art_pgd(_LabelAsTwoClasses(model, 0), nn.CrossEntropyLoss(), 2, images, y, spec,
                            batch_size, device)
        y = targets.detach().to("cpu", torch.float32).numpy()
        return _art_pgd(model, _JointBCE(), k, images, y, spec, batch_size, device)


def library_pgd_per_label(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    spec: AttackSpec,
    *,
    seed: int,
    batch_size: int = 64,
) -> torch.Tensor:
    """ART's PGD on each label alone: ``[K, B, C, *spatial]``, row ``k`` maximising ``BCE(z_k, t_k)``.

    Label ``k`` is shown to ART as two class logits ``[0, z_k]`` with cross-entropy, which is
    exactly the BCE of that label; the other labels are ignored by that attack. Row ``k`` is
    the worst case for label ``k``'s own loss (score label ``k`` on row ``k``). Label ``k``'s
    random start is seeded with ``seed + k``; otherwise as :func:`library_pgd`.
    """
    _check_library_args(images, targets, batch_size)
    k_labels = targets.shape[1]
    if spec.is_identity or spec.steps == 0:
        return images.detach().clone().unsqueeze(0).expand(k_labels, *images.shape).clone()
    device = _model_device(model, images.device)
    rows = []
    for k in range(k_labels):
        with _art_sandbox(model, seed + k, device):
            y = targets[:, k].detach().cpu().numpy().round().astype(np.int64)
            rows.append(_art_pgd(_LabelAsTwoClasses(model, k), nn.CrossEntropyLoss(), 2, images, y, spec,
                                 batch_size, device))
    return torch.stack(rows)
