"""Ctrl-C taken at safe points: between records, never inside a database call."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TypeVar

T = TypeVar("T")


class Interrupts:
    """Remembers a SIGINT so the work loop can stop where stopping leaves nothing half-done."""

    def __init__(self) -> None:
        self.requested = False
        self._waiting = False

    def check(self) -> None:
        """Raise KeyboardInterrupt if Ctrl-C was pressed since the last check."""
        if self.requested:
            raise KeyboardInterrupt

    def interruptible(self, items: Iterable[T]) -> Iterator[T]:
        """Yield items; Ctrl-C while waiting for the next one (no database call) raises at once."""
        iterator = iter(items)
        while True:
            self.check()
            # A reader may wait seconds for its next record (a capture's flows end late).
            self._waiting = True
            try:
                item = next(iterator)
            except StopIteration:
                return
            finally:
                self._waiting = False
            yield item

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        """Note the request; raise now if only waiting for input, else at the next check."""
        self.requested = True
        if self._waiting:
            self._waiting = False
            raise KeyboardInterrupt


@contextmanager
def deferred_interrupts() -> Iterator[Interrupts]:
    """Defer SIGINT to Interrupts.check() for the duration (main thread only)."""
    interrupts = Interrupts()
    if threading.current_thread() is not threading.main_thread():
        yield interrupts
        return
    # An interrupt landing inside SQLite's C code can leave a write transaction open
    # and the database locked, so the store is never interrupted mid-call.
    previous = signal.signal(signal.SIGINT, interrupts._handle)
    try:
        yield interrupts
    finally:
        signal.signal(signal.SIGINT, previous)
