"""The study report's building blocks: a :class:`Section` of blocks, and the number formats
every report table uses (:func:`fmt`, :func:`mean_sd`).

:mod:`.summary` and :mod:`.details` fill the sections; :mod:`.render` turns them into Markdown
and HTML."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: what a missing number is shown as.
MISSING = "—"


@dataclass
class Section:
    """One report section: blocks of ``("text"|"warning", str)``, ``("table", DataFrame)`` or
    ``("image", (png_bytes, alt))``."""

    id: str
    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def text(self, value: str) -> None:
        self.blocks.append(("text", value))

    def warning(self, value: str) -> None:
        self.blocks.append(("warning", value))

    def table(self, frame: pd.DataFrame) -> None:
        self.blocks.append(("table", frame))

    def image(self, png: bytes, alt: str) -> None:
        self.blocks.append(("image", (png, alt)))


def fmt(value: Any) -> str:
    """A table cell: 4 significant digits for floats, :data:`MISSING` for ``None`` / NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


def mean_sd(values: pd.Series) -> str:
    """``"mean ± sd"`` (sample sd, 2 significant digits) of the non-NaN ``values``; the value
    alone when there is one; :data:`MISSING` when there is none."""
    values = values.dropna()
    if values.empty:
        return MISSING
    if len(values) == 1:
        return f"{values.iloc[0]:.4g}"
    return f"{values.mean():.4g} ± {values.std(ddof=1):.2g}"
