"""Progress for people: a rich progress bar on a terminal, plain lines otherwise; warnings.

Everything said is made safe for a terminal first (rolecall.terminal_text): notes quote
file names, banners and error sentences read from input.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol, TextIO

from rolecall.terminal_text import terminal_safe

if TYPE_CHECKING:
    from rich.console import Console


class Advance(Protocol):
    """Moves a task forward by some units, with a note of what was just done."""

    def __call__(self, units: int, note: str) -> None:
        """Advance by units and say what was done."""


class Reporter:
    """Tells the person running rolecall what is happening, on stderr; quiet hides progress only."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._quiet = quiet
        self._rich: Console | None = None

    def _console(self) -> Console:
        """The rich console on the stream, made on first use: rich loads only for a terminal."""
        if self._rich is None:
            from rich.console import Console  # noqa: PLC0415 - see the method's docstring

            self._rich = Console(file=self._stream, highlight=False)
        return self._rich

    @property
    def interactive(self) -> bool:
        """Whether the stream is a terminal (progress bars) or not (plain lines)."""
        return self._stream.isatty()

    def note(self, message: str) -> None:
        """Say one line of progress, unless quiet."""
        if not self._quiet:
            self._say(message)

    def warn(self, message: str) -> None:
        """Say one line that matters to the outcome (a warning, a failure): quiet or not."""
        self._say(message)

    def _say(self, message: str) -> None:
        """Print one line, safe for a terminal."""
        line = terminal_safe(message)
        if self.interactive:
            self._console().print(line, markup=False)
        else:
            print(line, file=self._stream, flush=True)

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Advance]:
        """Yield a function that advances a task of total units."""
        if not self.interactive or self._quiet:
            done = 0

            def advance_plain(units: int, note: str) -> None:
                nonlocal done
                done += units
                self.note(f"{description}: {done}/{total} {note}".rstrip())

            yield advance_plain
            return
        from rich.progress import (  # noqa: PLC0415 - only a bar on a terminal needs rich
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[note]}"),
        )
        with Progress(*columns, console=self._console(), transient=False) as progress:
            task_id = progress.add_task(terminal_safe(description), total=total, note="")

            def advance_bar(units: int, note: str) -> None:
                progress.update(task_id, advance=units, note=terminal_safe(note))

            yield advance_bar
