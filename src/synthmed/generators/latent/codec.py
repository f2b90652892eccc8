"""``LatentCodec``: the :class:`~synthmed.generators.diffusion.codec.Codec` of latent diffusion.

Store samples are encoded by the frozen autoencoder (pre-quantization latents for ``vq``, the
posterior mean for ``kl``: :meth:`~synthmed.generators.latent.autoencoder.Autoencoder.encode`)
and scaled (:class:`~synthmed.generators.latent.scaling.LatentScaling`); diffused tensors are
un-scaled and decoded (``vq``: quantized to the nearest codes first), so every decoded label is valid.
Encoding happens on the fly, batch by batch, on the autoencoder's device: a training step costs
one encoder forward besides the denoiser's, and the store's batch order (and its resume) is
that of every other generator.
"""

from __future__ import annotations

import numpy as np
import torch

from synthmed.generators.latent.autoencoder import Autoencoder
from synthmed.generators.latent.scaling import LatentScaling


class LatentCodec:
    """Store samples ↔ scaled latents ``[B, latent_channels, *S / f]``.

    Args:
        autoencoder: the trained autoencoder stage (eval mode, no gradients).
        scaling: the run's latent scaling (of that autoencoder checkpoint).
    """

    def __init__(self, autoencoder: Autoencoder, scaling: LatentScaling):
        self.autoencoder, self.scaling = autoencoder, scaling

    @property
    def n_channels(self) -> int:
        """The autoencoder's latent channels."""
        return self.autoencoder.config.latent_channels

    @property
    def n_classes(self) -> int:
        return self.autoencoder.encoding.n_classes

    @property
    def bounded(self) -> bool:
        """``minmax`` scaling: the samplers clamp to ``[−1, 1]``; ``std``: nothing is clamped."""
        return self.scaling.bounded

    def encode(self, images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Scaled latents float32 ``[B, latent_channels, *S / f]`` of store samples, on the autoencoder's device."""
        return self.scaling.normalise(self.autoencoder.encode(images, labels))

    def decode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images float32 [B, C, *S] in [0, 1], labels uint8 [B, *S])`` from scaled latents (quantized for ``vq``)."""
        return self.autoencoder.decode(self.scaling.denormalise(x), quantize=True)
