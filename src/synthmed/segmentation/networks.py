"""Network factory: MONAI ``DynUNet`` (nnU-Net style) or ``SwinUNETR``, 2D or 3D."""

from __future__ import annotations

import torch
from monai.networks.nets import DynUNet, SwinUNETR

from synthmed.segmentation.config import SegmentModelConfig
from synthmed.segmentation.regions import N_REGIONS


def build_network(config: SegmentModelConfig) -> torch.nn.Module:
    """The segmenter of ``config``: input ``[B, in_channels, *image_shape]`` → logits ``[B, 3, *image_shape]``.

    ``unet``: a DynUNet with 3×3(×3) kernels, stride 1 at the first level and 2 below, instance
    norm and leaky ReLU (nnU-Net's defaults). With ``deep_supervision`` it returns, in training
    mode, ``[B, 1 + deep_supr_num, 3, *image_shape]`` (main output first, the heads upsampled);
    in eval mode always the main output. ``swin``: a SwinUNETR (patch 2, window ``window_size``).
    """
    dims = config.spatial_dims
    if config.network == "unet":
        levels = len(config.filters)
        kernels = [[3] * dims] * levels
        strides = [[1] * dims] + [[2] * dims] * (levels - 1)
        return DynUNet(dims, config.in_channels, N_REGIONS, kernel_size=kernels, strides=strides,
                       upsample_kernel_size=strides[1:], filters=list(config.filters),
                       deep_supervision=config.deep_supervision, deep_supr_num=config.deep_supr_num,
                       res_block=False)
    return SwinUNETR(in_channels=config.in_channels, out_channels=N_REGIONS, feature_size=config.feature_size,
                     depths=config.depths, num_heads=config.num_heads, window_size=config.window_size,
                     spatial_dims=dims)
