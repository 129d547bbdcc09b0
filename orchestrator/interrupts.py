"""Ctrl-C taken at safe points: between records, never inside a database call."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Interrupts:
    """Remembers a SIGINT so the work loop can stop where stopping leaves nothing half-done."""

    def __init__(self) -> None:
        self.requested = False

    def check(self) -> None:
        """Raise KeyboardInterrupt if Ctrl-C was pressed since the last check."""
        if self.requested:
            raise KeyboardInterrupt

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        """Note the request; the loop raises at its next check."""
        self.requested = True


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
