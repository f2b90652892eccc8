"""Name → class tables whose classes are imported on first use: ``{name: Registered("package.module:Class", summary)}``."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from synthmed.errors import SynthmedError


class Registered(NamedTuple):
    """One table entry: where the class lives, and what it is in a few words (for ``--help``)."""

    target: str
    summary: str = ""


def load_class(table: Mapping[str, Registered], kind: str, name: str, known: Iterable[str] | None = None) -> type:
    """The class ``table[name]`` names, imported now.

    Args:
        table: name → entry whose ``target`` is ``"package.module:Class"``.
        kind: what the names are (``"generator"``, ``"executor"``), for the error.
        known: the names the error lists (default: ``table``'s, in its order).

    Raises:
        SynthmedError: ``name`` is not in ``table`` (the message lists the known names).
    """
    if name not in table:
        raise SynthmedError(f"unknown {kind} {name!r}; known: {', '.join(table if known is None else known)}")
    module, cls = table[name].target.split(":")
    return getattr(importlib.import_module(module), cls)


def describe(table: Mapping[str, Registered], names: Iterable[str]) -> str:
    """``"a (what a is), b (what b is) or c"``: the names with their summaries, for a ``--help`` text
    that stays current when an entry is registered (nothing is imported)."""
    parts = [f"{n} ({table[n].summary})" if table[n].summary else n for n in names]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]
