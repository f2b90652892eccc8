"""The autoencoder of jointly encoded samples (MONAI ``VQVAE`` or ``AutoencoderKL``) and its PatchGAN discriminators.

:class:`LatentAutoencoder` maps an encoded sample ``x`` ``[B, C + L, *S]`` in ``[-1, 1]``
(:class:`~synthmed.data.JointEncoding`: image channels and the mask as extra channels) to a
latent ``z`` ``[B, latent_channels, *S / 2 ** (levels - 1)]`` and back:

* ``vq``: MONAI's ``VQVAE`` with its quantizer replaced by
  :class:`~synthmed.generators.latent.quantizer.RestartingEMAQuantizer`. :meth:`~LatentAutoencoder.encode`
  gives the *pre-quantization* latent; :meth:`~LatentAutoencoder.decode` quantizes it (nearest
  codes, no codebook update) unless ``quantize=False``. The training forward quantizes with the
  EMA update, the commitment loss and the straight-through estimator, so the reconstruction's
  gradient reaches the encoder.
* ``kl``: MONAI's ``AutoencoderKL``; :meth:`~LatentAutoencoder.encode` gives the posterior mean,
  the training forward samples ``z = μ + σ·ε`` with the caller's ``ε`` and returns the KL
  divergence (summed over latent elements, averaged over the batch, as MONAI's tutorials).

The decoder's output is unbounded; :meth:`JointEncoding.decode <synthmed.data.JointEncoding.decode>`
clamps the image and maps the mask channels to the nearest valid label.

The discriminators (:func:`build_discriminators`) are MONAI ``PatchDiscriminator`` s with batch
norm: a 2D one on slices (of a volume, or the 2D samples themselves) and, for 3D stores, a 3D
one on whole volumes. Each returns its intermediate feature maps and, last, its patch logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from synthmed.generators.latent.config import AutoencoderConfig
from synthmed.generators.latent.quantizer import RestartingEMAQuantizer


@dataclass
class AutoencoderOutput:
    """A training forward's results.

    Attributes:
        reconstruction: ``[B, C + L, *S]`` (the decoder's dtype under autocast).
        regulariser: scalar: the commitment loss (``vq``, already times its cost) or the KL
            divergence (``kl``, unweighted).
        latent: the pre-quantization latent (``vq``) or the sampled one (``kl``).
        perplexity: ``vq``: the codebook perplexity of this batch; ``kl``: ``None``.
    """

    reconstruction: torch.Tensor
    regulariser: torch.Tensor
    latent: torch.Tensor
    perplexity: torch.Tensor | None


def _levels(config: AutoencoderConfig) -> tuple[tuple, tuple]:
    """MONAI VQVAE's down- and upsampling parameters: the first level keeps the size (3×3 conv),
    every further one halves it (4×4 stride-2 conv) and, in the decoder, doubles it back."""
    down = tuple((1, 3, 1, 1) if i == 0 else (2, 4, 1, 1) for i in range(len(config.channels)))
    up = tuple((1, 3, 1, 1, 0) if i == len(config.channels) - 1 else (2, 4, 1, 1, 0)
               for i in range(len(config.channels)))
    return down, up


def _vqvae(config: AutoencoderConfig) -> nn.Module:
    from monai.networks.nets import VQVAE

    down, up = _levels(config)
    net = VQVAE(config.spatial_dims, config.in_channels, config.in_channels, channels=config.channels,
                num_res_layers=config.num_res_layers, num_res_channels=config.channels,
                downsample_parameters=down, upsample_parameters=up, num_embeddings=config.num_embeddings,
                embedding_dim=config.latent_channels, commitment_cost=config.commitment,
                decay=config.codebook_decay)
    net.quantizer.quantizer = RestartingEMAQuantizer(
        config.spatial_dims, config.num_embeddings, config.latent_channels, commitment_cost=config.commitment,
        decay=config.codebook_decay, restart_threshold=config.restart_threshold)
    return net


def _autoencoder_kl(config: AutoencoderConfig) -> nn.Module:
    from monai.networks.nets import AutoencoderKL

    levels = len(config.channels)
    attention = tuple(config.attention and i == levels - 1 for i in range(levels))
    return AutoencoderKL(config.spatial_dims, config.in_channels, config.in_channels,
                         num_res_blocks=config.num_res_layers, channels=config.channels, attention_levels=attention,
                         latent_channels=config.latent_channels, norm_num_groups=config.norm_num_groups,
                         with_encoder_nonlocal_attn=config.attention, with_decoder_nonlocal_attn=config.attention)


class LatentAutoencoder(nn.Module):
    """VQ-VAE or KL autoencoder of encoded samples (see the module docstring).

    Args:
        config: the model config (completed with the store's dims, channels and shape).
    """

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.kind = config.kind
        self.net = _vqvae(config) if config.kind == "vq" else _autoencoder_kl(config)

    @property
    def quantizer(self) -> RestartingEMAQuantizer | None:
        """The codebook (``vq``), else ``None``."""
        return self.net.quantizer.quantizer if self.kind == "vq" else None

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The latent of encoded samples ``x`` ``[B, C + L, *S]``: pre-quantization (``vq``) or the
        posterior mean (``kl``), ``[B, latent_channels, *latent sides]``."""
        if self.kind == "vq":
            return self.net.encode(x)
        return self.net.encode(x)[0]

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """``vq``: each latent vector replaced by its nearest code (no codebook update, no
        gradient to the codebook); ``kl``: ``z`` unchanged."""
        q = self.quantizer
        if q is None:
            return z
        return q.embed(q.quantize(z)[2]).to(z.dtype)

    def code_indices(self, z: torch.Tensor) -> torch.Tensor:
        """``vq``: int64 ``[B, *latent sides]``, the nearest code of each latent vector.

        Raises:
            ValueError: a ``kl`` autoencoder has no codebook.
        """
        if self.quantizer is None:
            raise ValueError("a kl autoencoder has no codebook")
        return self.quantizer.quantize(z)[2]

    def decode(self, z: torch.Tensor, *, quantize: bool = True) -> torch.Tensor:
        """Encoded samples ``[B, C + L, *S]`` from latents ``z``; ``vq`` latents are quantized
        first unless ``quantize`` is false."""
        return self.net.decode(self.quantize(z) if quantize else z)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> AutoencoderOutput:
        """The training forward of ``x`` (see the module docstring); ``noise``: the ``kl``
        posterior's ``ε`` (the latent's shape; ``None``: the mean)."""
        if self.kind == "vq":
            z = self.net.encode(x)
            loss, quantized = self.net.quantizer(z)  # EMA update (training), commitment, straight-through
            return AutoencoderOutput(self.net.decode(quantized), loss, z, self.net.quantizer.perplexity)
        mu, sigma = self.net.encode(x)
        z = mu if noise is None else mu + sigma * noise.to(mu.dtype)
        mu32, sigma32 = mu.float(), sigma.float()
        kl = 0.5 * (mu32.square() + sigma32.square() - torch.log(sigma32.square().clamp_min(1e-12)) - 1)
        return AutoencoderOutput(self.net.decode(z), kl.flatten(1).sum(1).mean(), z, None)


def build_discriminators(config: AutoencoderConfig) -> tuple[nn.Module, nn.Module | None]:
    """``(slice discriminator (2D), volume discriminator (3D; None for 2D stores))``, MONAI
    ``PatchDiscriminator`` s of ``disc_layers`` stride-2 layers with batch norm."""
    from monai.networks.nets import PatchDiscriminator

    def make(dims: int) -> nn.Module:
        return PatchDiscriminator(dims, config.disc_channels, config.in_channels, num_layers_d=config.disc_layers)

    return make(2), make(3) if config.spatial_dims == 3 else None
