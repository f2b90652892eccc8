"""Name → class tables whose classes are imported on first use: ``{name: "package.module:Class"}``."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping

from synthmed.errors import SynthmedError


def load_class(table: Mapping[str, str], kind: str, name: str, known: Iterable[str] | None = None) -> type:
    """The class ``table[name]`` names, imported now.

    Args:
        table: name → ``"package.module:Class"``.
        kind: what the names are (``"generator"``, ``"executor"``), for the error.
        known: the names the error lists (default: ``table``'s, in its order).

    Raises:
        SynthmedError: ``name`` is not in ``table`` (the message lists the known names).
    """
    if name not in table:
        raise SynthmedError(f"unknown {kind} {name!r}; known: {', '.join(table if known is None else known)}")
    module, cls = table[name].split(":")
    return getattr(importlib.import_module(module), cls)
