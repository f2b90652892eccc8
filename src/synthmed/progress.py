"""The one progress bar style of the project (Rich): description, bar, count, elapsed, ETA."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

#: Progress and status go to stderr so stdout stays parseable (e.g. ``--json``).
console = Console(stderr=True)


def progress_bar(*, enabled: bool = True, extra: Iterable[TextColumn] = ()) -> Progress:
    """A Rich progress bar with ETA; ``extra`` columns (e.g. a loss) come last."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        *extra,
        console=console,
        disable=not enabled,
    )


def track(items: Iterable[T], *, total: int, description: str, enabled: bool = True) -> Iterator[T]:
    """Yield from ``items`` while advancing a progress bar of ``total`` steps."""
    with progress_bar(enabled=enabled) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)
