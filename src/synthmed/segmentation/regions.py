"""Region targets: the network predicts the BraTS regions, not the classes.

Like nnU-Net for BraTS, a segmenter has :data:`N_REGIONS` = 3 **sigmoid** outputs, in the
order of :data:`REGION_NAMES`: WT = {1, 2, 3}, TC = {1, 3}, ET = {3} of the canonical labels
(0 background, 1 NCR, 2 ED, 3 ET). Training targets come from :func:`labels_to_regions`;
predictions (probability > 0.5) go back to canonical labels with :func:`regions_to_labels`,
painting the nested regions in order: WT → 2 (ED), then TC → 1 (NCR), then ET → 3. A voxel
predicted ET but not WT is therefore ET (the regions of the labels written are nested, and
WT ⊇ TC ⊇ ET always holds on the result). Evaluation scores WT, TC and ET of the labels.
"""

from __future__ import annotations

import torch

from synthmed.data.case import REGIONS

#: The output channels, in order.
REGION_NAMES: tuple[str, ...] = ("WT", "TC", "ET")
N_REGIONS = len(REGION_NAMES)


def labels_to_regions(labels: torch.Tensor) -> torch.Tensor:
    """Canonical labels ``[B, *spatial]`` (any integer dtype) → float32 ``[B, 3, *spatial]`` in {0, 1}."""
    planes = [torch.zeros_like(labels, dtype=torch.bool) for _ in REGION_NAMES]
    for k, name in enumerate(REGION_NAMES):
        for value in REGIONS[name]:
            planes[k] |= labels == value
    return torch.stack(planes, dim=1).float()


def regions_to_labels(regions: torch.Tensor) -> torch.Tensor:
    """Boolean (or 0/1) regions ``[B, 3, *spatial]`` → uint8 canonical labels ``[B, *spatial]``."""
    regions = regions.bool()
    out = torch.zeros(regions[:, 0].shape, dtype=torch.uint8, device=regions.device)
    out[regions[:, 0]] = 2
    out[regions[:, 1]] = 1
    out[regions[:, 2]] = 3
    return out


def logits_to_labels(logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Network output ``[B, 3, *spatial]`` (logits) → uint8 labels ``[B, *spatial]`` (sigmoid > ``threshold``)."""
    return regions_to_labels(torch.sigmoid(logits.float()) > threshold)
