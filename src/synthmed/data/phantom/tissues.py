"""The tissue classes mixed into every phantom voxel and their mean intensity per MR sequence."""

from __future__ import annotations

import numpy as np

#: Tissue classes mixed into every voxel, in this order.
TISSUES: tuple[str, ...] = ("csf", "gm", "wm", "ncr", "ed", "et")

#: Mean intensity of each tissue (columns, :data:`TISSUES` order) per sequence (rows,
#: :data:`CANONICAL_CHANNELS` order), before per-case jitter (±5 % per entry) and scaling
#: (±20 % per sequence).
TISSUE_MEANS: np.ndarray = np.array(
    [
        # csf    gm     wm    ncr    ed     et
        [180.0, 520.0, 760.0, 250.0, 430.0, 560.0],  # t1: WM > GM > CSF; tumour hypointense
        [200.0, 540.0, 740.0, 210.0, 450.0, 1250.0],  # t1ce: enhancing rim very bright, necrosis dark
        [1100.0, 520.0, 330.0, 950.0, 860.0, 640.0],  # t2: CSF brightest, WM < GM, edema bright
        [110.0, 520.0, 400.0, 470.0, 900.0, 680.0],  # flair: CSF suppressed, edema bright
    ],
    dtype=np.float32,
)
