"""The denoising network: MONAI ``DiffusionModelUNet``, 2D or 3D.

The network maps ``(x_t float [B, C, *spatial], t [B])`` to a tensor of the same shape as
``x_t`` (noise for DDPM, velocity for rectified flow). It knows nothing about how it is
trained or sampled, nor whether ``x_t`` is a joint encoding or a latent.
"""

from __future__ import annotations

from monai.networks.nets import DiffusionModelUNet

from synthmed.data.encoding import JointEncoding
from synthmed.generators.config import DiffusionModelConfig


def n_encoded_channels(config: DiffusionModelConfig) -> int:
    """Channels of the joint encoding of ``config`` (:attr:`~synthmed.data.encoding.JointEncoding.n_channels`)."""
    return JointEncoding(config.image_channels, config.label_mode).n_channels


def build_unet(config: DiffusionModelConfig, channels: int | None = None) -> DiffusionModelUNet:
    """A ``DiffusionModelUNet`` with in = out = ``channels`` (``None``: the joint encoding's
    :func:`n_encoded_channels`; latent diffusion: the autoencoder's latent channels)."""
    channels = n_encoded_channels(config) if channels is None else int(channels)
    return DiffusionModelUNet(
        spatial_dims=config.spatial_dims,
        in_channels=channels,
        out_channels=channels,
        channels=tuple(config.channels),
        attention_levels=tuple(config.attention_levels),
        num_res_blocks=config.num_res_blocks,
        num_head_channels=config.num_head_channels,
        norm_num_groups=config.norm_num_groups,
    )
