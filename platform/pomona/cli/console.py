"""Terminal rendering shared by the CLI commands: one console, progress bars, tables."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# No emoji codes: paths, addresses and messages are printed as written (":abc:" stays text).
console = Console(highlight=False, emoji=False)
err_console = Console(stderr=True, highlight=False, emoji=False)


class _ShownFromFirstTask(Progress):
    """A progress display that appears with its first task, not when it is created.

    Commands open the bar before calls that may still fail on a user's mistake; those failures
    then print their one error line without an empty bar above it.
    """

    def add_task(self, *args: Any, **kwargs: Any) -> TaskID:
        if not self.live.is_started:
            self.start()
        return super().add_task(*args, **kwargs)


@contextmanager
def progress_bar(description: str) -> Iterator[Progress]:
    """A progress bar on stderr (so piped stdout stays clean), shown from its first task on."""
    progress = _ShownFromFirstTask(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )
    try:
        yield progress
    finally:
        if progress.live.is_started:
            progress.stop()
