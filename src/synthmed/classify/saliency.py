"""Saliency maps of a classifier's logit through Captum: vanilla gradient, SmoothGrad, Integrated Gradients, Grad-CAM.

Conventions (:func:`saliency_maps`):

* The model maps images ``[B, C, *spatial]`` in [0, 1] (2D or 3D) to logits ``[B, K]``;
  ``target`` is the logit explained. Maps are ``[B, *spatial]``, float32, non-negative, on the
  CPU, one per image.
* **gradient**: Captum's ``Saliency``, |∂ logit / ∂ x|. **smoothgrad**: ``NoiseTunnel`` over
  ``Saliency`` (``nt_type="smoothgrad"``), the mean |gradient| over ``smoothgrad_samples``
  noisy copies, the noise's standard deviation ``smoothgrad_sigma`` times the input range
  (1 for [0, 1] images). **integrated-gradients**: Captum's ``IntegratedGradients`` from a
  zero (black) baseline, ``ig_steps`` Gauss–Legendre steps; its signed attributions sum to
  f(x) − f(0). These three are ``[B, C, *spatial]`` and become one map as the **sum over
  channels of |attribution|**. **gradcam**: ``LayerGradCam`` on ``layer`` (the networks'
  ``gradcam_layer(model)``), ReLU'd, upsampled to the input size by
  ``LayerAttribution.interpolate`` (bilinear in 2D, trilinear in 3D) and ReLU'd again.
* SmoothGrad noise is drawn (Captum draws from the global torch RNG) inside a forked RNG
  seeded from ``seed``: the maps are a function of ``seed``, the batch and the device, and the
  caller's RNG state is left as it was.
* The model runs in eval mode for the call (each module's previous mode is restored after),
  parameters' ``.grad`` are left as they were, and memory is that of one batch: SmoothGrad
  and Integrated Gradients evaluate their samples and steps one batch ``B`` at a time.

:func:`clip_for_display` is the display scaling of Han et al. 2020: clip to mean ± 3 sample
standard deviations, then scale to [0, 1].
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from synthmed.classify.modes import eval_mode
from synthmed.classify.names import METHODS
from synthmed.training.seeding import derive_seed

__all__ = ["METHODS", "clip_for_display", "saliency_maps"]



@contextmanager
def _seeded_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the global CPU generator (and ``device``'s, when it is a GPU) for the block; restore them after."""
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        value = derive_seed(seed)
        torch.random.default_generator.manual_seed(value)
        if cuda:
            with torch.cuda.device(cuda[0]):
                torch.cuda.manual_seed(value)
        yield


@contextmanager
def _explaining(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode for the block; each module's mode and each parameter's ``.grad`` restored after."""
    grads = [(p, p.grad) for p in model.parameters()]
    try:
        with eval_mode(model), torch.enable_grad():
            yield
    finally:
        for p, grad in grads:
            p.grad = grad


def _channel_sum(attributions: torch.Tensor) -> torch.Tensor:
    return attributions.abs().sum(dim=1)


def saliency_maps(model: nn.Module, images: torch.Tensor, *, method: str, target: int = 0,
                  layer: nn.Module | None = None, smoothgrad_samples: int = 16, smoothgrad_sigma: float = 0.15,
                  ig_steps: int = 32, seed: int = 0) -> torch.Tensor:
    """Non-negative saliency maps ``[B, *spatial]`` (float32, CPU) of logit ``target`` for ``images`` ``[B, C, *spatial]``.

    ``method`` is one of :data:`METHODS`; ``layer`` (a module of ``model``) is required for
    ``gradcam`` and ignored otherwise. ``images`` (values in [0, 1]) must be on the model's
    device. Conventions are in the module docstring.
    """
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, NoiseTunnel, Saliency

    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if images.ndim not in (4, 5):
        raise ValueError(f"images must be [B, C, H, W] or [B, C, D, H, W], got shape {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError("images hold no sample (batch of 0)")
    if method == "gradcam" and layer is None:
        raise ValueError("gradcam needs the layer to explain (layer=gradcam_layer(model))")
    if smoothgrad_samples < 1 or ig_steps < 1:
        raise ValueError(f"smoothgrad_samples and ig_steps must be >= 1, got {smoothgrad_samples} and {ig_steps}")
    x = images.detach().requires_grad_(True)  # (Captum warns on inputs that do not require gradients)
    target = int(target)
    with _explaining(model):
        if method == "gradient":
            maps = _channel_sum(Saliency(model).attribute(x, target=target, abs=True))
        elif method == "smoothgrad":
            with _seeded_rng(seed, x.device):
                attributions = NoiseTunnel(Saliency(model)).attribute(
                    x, nt_type="smoothgrad", nt_samples=int(smoothgrad_samples), nt_samples_batch_size=1,
                    stdevs=float(smoothgrad_sigma), target=target, abs=True)
            maps = _channel_sum(attributions)
        elif method == "integrated-gradients":
            attributions = IntegratedGradients(model).attribute(
                x, baselines=torch.zeros_like(x), target=target, n_steps=int(ig_steps),
                internal_batch_size=x.shape[0])
            maps = _channel_sum(attributions)
        else:
            cam = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)
            mode = "bilinear" if x.ndim == 4 else "trilinear"
            maps = LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode=mode)[:, 0].clamp_min(0)
    return maps.detach().to("cpu", torch.float32)


def clip_for_display(saliency: np.ndarray) -> np.ndarray:
    """``saliency`` clipped to its mean ± 3 sample standard deviations and scaled to [0, 1] (float32).

    A constant map (nothing to scale) becomes zeros. Any shape; the statistics are over all values.
    """
    s = np.asarray(saliency, dtype=np.float64)
    if s.size == 0:
        return s.astype(np.float32)
    mean = s.mean()
    sd = s.std(ddof=1) if s.size > 1 else 0.0
    s = np.clip(s, mean - 3 * sd, mean + 3 * sd)
    s = s - s.min()
    top = s.max()
    return (s / top if top > 0 else np.zeros_like(s)).astype(np.float32)
