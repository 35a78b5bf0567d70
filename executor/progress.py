"""A byte-counting progress bar on stderr, shown only to a person at a terminal.

Hashing a large dataset takes minutes; a bar with bytes/s and an ETA tells the
user it is working and how long to wait. Pipelines and log files get nothing
(stderr not a TTY, or ``--quiet``), so their output stays clean and parseable.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import TracebackType
from typing import Protocol

# One line told to the user on stderr (a note, a warning, what rexec is doing): every
# function that talks while it works takes one of these, the CLI decides where it goes.
Say = Callable[[str], None]


class Progress(Protocol):
    """Something that can be told how many more bytes are done."""

    def advance(self, nbytes: int) -> None:
        """Count ``nbytes`` more as done."""

    def __enter__(self) -> Progress: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class NoProgress:
    """Does nothing: used when nobody is watching."""

    def advance(self, nbytes: int) -> None:
        """Do nothing: the quiet and the non-terminal case."""
        pass

    def __enter__(self) -> NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class BarProgress:
    """A rich bar over a known byte total, drawn on stderr."""

    def __init__(self, *, total: int, label: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task = self._bar.add_task(label, total=max(total, 1))

    def advance(self, nbytes: int) -> None:
        """Count ``nbytes`` more and redraw at most every tenth of a second."""
        self._bar.advance(self._task, nbytes)

    def __enter__(self) -> BarProgress:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()


def progress_shown() -> bool:
    """Whether a bar would be drawn: stderr is a person's terminal."""
    return sys.stderr.isatty()


def make_progress(*, enabled: bool, total: int, label: str) -> Progress:
    """A bar when asked for and stderr is a terminal; otherwise nothing."""
    if enabled and progress_shown():
        return BarProgress(total=total, label=label)
    return NoProgress()
