"""Network factory: MONAI ``DynUNet`` (nnU-Net style) or ``SwinUNETR``, 2D or 3D; and which of
their weights are the *head* (the last convolutions to the outputs) and which the *body*."""

from __future__ import annotations

import torch
from monai.networks.nets import DynUNet, SwinUNETR

from synthmed.segmentation.config import NetworkName, SegmentModelConfig
from synthmed.segmentation.regions import N_REGIONS

#: Per network, the modules that map features to the outputs: the 1×1(×1) convolutions of the
#: DynUNet's ``output_block`` and deep-supervision heads (``deep_supervision_heads``, also reached
#: as ``skip_layers…super_head``) and the SwinUNETR's ``out``. Everything else is the body
#: (encoder and decoder), whose shapes do not depend on the number of outputs.
HEAD_MODULES: dict[NetworkName, frozenset[str]] = {
    "unet": frozenset({"output_block", "deep_supervision_heads", "super_head"}),
    "swin": frozenset({"out"}),
}


def is_head(network: NetworkName, key: str) -> bool:
    """Whether the state-dict ``key`` of a ``network`` (``unet`` or ``swin``) is a head weight
    (one of its module names is in :data:`HEAD_MODULES`)."""
    return any(part in HEAD_MODULES[network] for part in key.split(".")[:-1])


def build_network(config: SegmentModelConfig, out_channels: int = N_REGIONS) -> torch.nn.Module:
    """The segmenter of ``config``: input ``[B, in_channels, *image_shape]`` → logits
    ``[B, out_channels, *image_shape]``.

    ``out_channels`` is the three BraTS regions for segmentation; other heads (e.g. the image
    channels of :mod:`~synthmed.segmentation.ssl`'s reconstruction) change only the head
    weights (:func:`is_head`).

    ``unet``: a DynUNet with 3×3(×3) kernels, stride 1 at the first level and 2 below, instance
    norm and leaky ReLU (nnU-Net's defaults). With ``deep_supervision`` it returns, in training
    mode, ``[B, 1 + deep_supr_num, out_channels, *image_shape]`` (main output first, the heads
    upsampled); in eval mode always the main output. ``swin``: a SwinUNETR (patch 2, window
    ``window_size``).
    """
    dims = config.spatial_dims
    if config.network == "unet":
        levels = len(config.filters)
        kernels = [[3] * dims] * levels
        strides = [[1] * dims] + [[2] * dims] * (levels - 1)
        return DynUNet(dims, config.in_channels, out_channels, kernel_size=kernels, strides=strides,
                       upsample_kernel_size=strides[1:], filters=list(config.filters),
                       deep_supervision=config.deep_supervision, deep_supr_num=config.deep_supr_num,
                       res_block=False)
    return SwinUNETR(in_channels=config.in_channels, out_channels=out_channels, feature_size=config.feature_size,
                     depths=config.depths, num_heads=config.num_heads, window_size=config.window_size,
                     spatial_dims=dims)
