"""The `Case`: one patient's co-registered image channels and tumour label.

Axis convention. Arrays are indexed ``[D, H, W]`` = (z, y, x) of the NIfTI voxel grid
after reorientation to the closest RAS+ orientation: ``D`` runs inferior → superior (axial
slices are ``images[:, d]``), ``H`` posterior → anterior, ``W`` left → right. ``spacing`` is
in millimetres in the same ``(D, H, W)`` order; ``affine`` is the RAS+ NIfTI affine that maps
voxel indices ``(x, y, z)`` = ``(w, h, d)`` to millimetres.

Labels are canonical (docs/design.md): 0 background, 1 necrotic / non-enhancing core (NCR),
2 edema (ED), 3 enhancing tumour (ET). Readers map their layout's values on load.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Canonical channel order of every case and store.
CANONICAL_CHANNELS: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")

#: Canonical label values and their names.
LABEL_NAMES: dict[int, str] = {0: "background", 1: "NCR", 2: "ED", 3: "ET"}

#: BraTS evaluation regions as sets of canonical labels.
REGIONS: dict[str, tuple[int, ...]] = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}


@dataclass
class Case:
    """One patient.

    Attributes:
        id: case identifier, unique within a dataset.
        images: float32 ``[C, D, H, W]``, raw scanner intensities (not normalised).
        label: uint8 ``[D, H, W]`` with canonical values 0..3.
        channels: channel names, ``len(channels) == C``.
        spacing: voxel size in mm, ``(D, H, W)`` order.
        affine: 4×4 RAS+ voxel-to-mm affine of the NIfTI grid.
    """

    id: str
    images: np.ndarray
    label: np.ndarray
    channels: tuple[str, ...] = CANONICAL_CHANNELS
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise ValueError(f"case {self.id}: images must be [C, D, H, W], got shape {self.images.shape}")
        if self.label.shape != self.images.shape[1:]:
            raise ValueError(
                f"case {self.id}: label shape {self.label.shape} != image shape {self.images.shape[1:]}"
            )
        if len(self.channels) != self.images.shape[0]:
            raise ValueError(f"case {self.id}: {len(self.channels)} channel names for {self.images.shape[0]} channels")

    @property
    def shape(self) -> tuple[int, int, int]:
        """Spatial shape ``(D, H, W)``."""
        return tuple(self.label.shape)  # type: ignore[return-value]
