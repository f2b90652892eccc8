"""Dataset layout readers: BraTS, MSD, nnU-Net and CSV manifests → `CaseSource` → `Case`.

``discover_cases(src, layout)`` lists a dataset's cases without reading images (dataset-level
problems raise `DataError` there); ``CaseSource.load()`` reads one case into canonical
channels (t1, t1ce, t2, flair) and labels (0 background, 1 NCR, 2 ED, 3 ET), validating it
(per-case problems raise `DataError` there, naming the case and the file).
"""

from synthmed.data.layouts.base import LAYOUTS, CaseSource, ChannelFile
from synthmed.data.layouts.detect import LAYOUT_DESCRIPTIONS, detect_layout, discover_cases

__all__ = ["LAYOUTS", "LAYOUT_DESCRIPTIONS", "CaseSource", "ChannelFile", "detect_layout", "discover_cases"]
