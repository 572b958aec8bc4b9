"""A progress bar with an ETA on a terminal (rich), for the soak and the benchmarks; plain otherwise."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class Tick(Protocol):
    """Advance the bar (by one unless told otherwise)."""

    def __call__(self, advance: float = 1) -> None: ...


def _nothing(advance: float = 1) -> None:
    pass


@contextmanager
def progress_bar(label: str, total: float, *, plain: bool = False) -> Iterator[Tick]:
    """A bar with an ETA while stdout is a terminal; nothing when ``plain`` (``--json``) or not a TTY."""
    if plain or not sys.stdout.isatty():
        yield _nothing
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("ETA"))
    with Progress(*columns, TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task(label, total=total)

        def tick(advance: float = 1) -> None:
            bar.advance(task, advance)

        yield tick
