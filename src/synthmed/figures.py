"""Figures on disk and in memory: matplotlib on the Agg backend, PNG written atomically or returned as bytes."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from synthmed.atomic import atomic_file


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed); imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: str | Path, *, dpi: int = 100) -> Path:
    """Lay ``fig`` out tightly, write it as a PNG at ``dpi`` to ``path`` (atomically: a reader sees
    the old file or the whole new one) and close it."""
    fig.tight_layout()
    path = Path(path)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    pyplot().close(fig)
    return path


def png_bytes(fig: Any, *, dpi: int = 90) -> bytes:
    """``fig`` as PNG bytes at ``dpi`` (laid out as drawn); the figure is closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    pyplot().close(fig)
    return buffer.getvalue()
