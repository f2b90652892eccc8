"""The autoencoder stage's adversarial terms and random slices (Khader et al. 2022's VQ-GAN losses).

* Hinge loss: the discriminator minimises ``½·(mean(relu(1 − D(real))) + mean(relu(1 + D(fake))))``,
  the autoencoder ``−mean(D(fake))``.
* Feature matching: the sum over the discriminator's intermediate feature maps (all its
  outputs but the last, the logits) of the mean L1 distance between the reconstruction's and
  the real sample's features (the real ones detached): FirasGit/medicaldiffusion's term, whose
  per-map factor ``4 / (3 + 1)`` is 1 for its 3-layer discriminators.
* :func:`adversarial_on`: the adversarial and feature-matching terms count, and the
  discriminators train, from ``disc_start`` on; before it they are not computed at all, so they
  contribute exactly zero gradient.
* :func:`random_slices`: one axial slice per volume at the given indices (the slice
  discriminator's and the perceptual term's input); 2D samples are their own slices.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def hinge_d(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's hinge loss (scalar, float32)."""
    return 0.5 * (F.relu(1 - real_logits.float()).mean() + F.relu(1 + fake_logits.float()).mean())


def hinge_g(fake_logits: torch.Tensor) -> torch.Tensor:
    """The autoencoder's (generator's) hinge loss: ``−mean(D(fake))`` (scalar, float32)."""
    return -fake_logits.float().mean()


def feature_matching(fake: Sequence[torch.Tensor], real: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over the intermediate maps (``fake[:-1]``, ``real[:-1]``: the logits excluded) of the
    mean L1 distance, the real features detached (scalar, float32)."""
    terms = [F.l1_loss(f.float(), r.detach().float()) for f, r in zip(fake[:-1], real[:-1])]
    return torch.stack(terms).sum()


def adversarial_on(step: int, disc_start: int) -> bool:
    """Whether step ``step`` (0-based) trains the discriminators and counts their terms."""
    return step >= disc_start


def random_slices(x: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    """``[B, C, D, H, W]`` → ``[B, C, H, W]``: sample ``b``'s axial slice ``index[b]``; 2D
    samples ``[B, C, H, W]`` are returned as they are (``index`` ignored)."""
    if x.ndim == 4:
        return x
    if index is None or index.shape != (x.shape[0],):
        raise ValueError(f"random_slices needs one index per volume ([{x.shape[0]}]), got "
                         f"{None if index is None else tuple(index.shape)}")
    return x[torch.arange(x.shape[0], device=x.device), :, index.to(x.device)]
