"""The 2.5D embedding: a 2D feature extractor applied to slices, or to each volume's three central planes.

A volume ``[C, D, H, W]`` gives its three central orthogonal planes (axial ``[C, H, W]``,
coronal ``[C, D, W]``, sagittal ``[C, D, H]``), each resized to the axial plane's size; the 2D
extractor embeds each and the three vectors are concatenated (``F`` × 3; logits are
averaged). Inputs are in ``[0, 1]`` as stored.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F


class FeatureExtractor(Protocol):
    """Maps a 2D batch ``[B, C, H, W]`` in [0, 1] to ``(features [B, F], logits [B, K] or None)``."""

    name: str

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]: ...


def orthogonal_planes(volumes: torch.Tensor) -> list[torch.Tensor]:
    """Central axial, coronal and sagittal planes of ``[B, C, D, H, W]``, each ``[B, C, H, W]``
    (coronal and sagittal resized bilinearly to the axial ``H × W``)."""
    _, _, d, h, w = volumes.shape
    axial = volumes[:, :, d // 2]
    coronal = volumes[:, :, :, h // 2]  # [B, C, D, W]
    sagittal = volumes[:, :, :, :, w // 2]  # [B, C, D, H]
    out = [axial]
    for plane in (coronal, sagittal):
        if plane.shape[2:] != (h, w):
            plane = F.interpolate(plane, size=(h, w), mode="bilinear", align_corners=False)
        out.append(plane)
    return out


def describe_embedding(features: str, spatial_dims: int) -> str:
    """How :func:`embed` turns a sample of ``spatial_dims`` dimensions into ``features`` features,
    in words (fidelity results record it as ``feature_space``)."""
    if spatial_dims == 3:
        return (f"{features} features in 2.5D: each volume's central axial, coronal and sagittal planes "
                "through the 2D extractor, concatenated")
    return f"{features} features of each 2D slice"


@torch.no_grad()
def embed(extractor: FeatureExtractor, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Features (and logits) of a batch ``[B, C, H, W]`` or, as 2.5D, ``[B, C, D, H, W]``."""
    if images.ndim == 4:
        return extractor(images)
    parts = [extractor(plane) for plane in orthogonal_planes(images)]
    feats = torch.cat([p[0] for p in parts], dim=1)
    logits = None if parts[0][1] is None else torch.stack([p[1] for p in parts]).mean(0)
    return feats, logits
