"""What a diffusion model diffuses: the :class:`Codec` between store samples and the tensors the network sees.

The pixel-space ``ddpm`` generator diffuses the joint encoding itself
(:class:`~synthmed.data.JointEncoding`, ``C + L`` channels in ``[-1, 1]``); latent diffusion
diffuses an autoencoder's scaled latents (:class:`~synthmed.generators.latent.codec.LatentCodec`).
The training task, its preview and the samplers take either through this protocol, so the
diffusion code is the same for both.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch


class Codec(Protocol):
    """Store samples ↔ diffused tensors ``[B, n_channels, *shape]``.

    Attributes:
        n_channels: channels of a diffused tensor (the network's in and out channels).
        n_classes: label values ``0 … n_classes - 1`` of decoded labels.
        bounded: every diffused value lies in ``[-1, 1]``: samplers clamp their ``x0`` estimates
            and the sample there (false: nothing is clamped).
    """

    @property
    def n_channels(self) -> int: ...

    @property
    def n_classes(self) -> int: ...

    @property
    def bounded(self) -> bool: ...

    def encode(self, images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``images`` float ``[B, C, *S]`` in ``[0, 1]`` and ``labels`` uint8 ``[B, *S]`` → float32
        ``[B, n_channels, *shape]`` on the device of ``images`` (or of the codec's network)."""
        ...

    def decode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images float32 [B, C, *S] in [0, 1], labels uint8 [B, *S])`` from diffused tensors."""
        ...
