"""Ctrl-C and SIGTERM taken at safe points: between records, never inside a database call."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import NoReturn, TypeVar

T = TypeVar("T")

# SIGTERM is raised as SystemExit with this status where Ctrl-C raises KeyboardInterrupt:
# not an error (nothing catching Exception swallows it), and a run records it as interrupted.
TERMINATED_STATUS = 128 + signal.SIGTERM


def terminated() -> SystemExit:
    """What SIGTERM raises: SystemExit with status 143."""
    return SystemExit(TERMINATED_STATUS)


def raise_terminated(_signum: int, _frame: FrameType | None) -> NoReturn:
    """A SIGTERM handler that stops the process as Ctrl-C does, with terminated()."""
    raise terminated()


def take_sigterm() -> None:
    """Make SIGTERM raise terminated() in the main thread, as SIGINT raises KeyboardInterrupt."""
    # As Python does for SIGINT: a signal ignored by whoever started us stays ignored.
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN:
        signal.signal(signal.SIGTERM, raise_terminated)


class Interrupts:
    """Remembers a SIGINT or SIGTERM so the work loop can stop where it leaves nothing half-done."""

    def __init__(self) -> None:
        self.requested = False
        self._terminated = False
        self._waiting = False

    def check(self) -> None:
        """Raise KeyboardInterrupt (Ctrl-C) or terminated() (SIGTERM) if one came since the last."""
        if self.requested:
            self._stop()

    def _stop(self) -> NoReturn:
        """Raise what the signal received asks for."""
        if self._terminated:
            raise terminated()
        raise KeyboardInterrupt

    def interruptible(self, items: Iterable[T]) -> Iterator[T]:
        """Yield items; a signal while waiting for the next one (no database call) raises now."""
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

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        """Note the request; raise now if only waiting for input, else at the next check."""
        self.requested = True
        self._terminated = self._terminated or signum == signal.SIGTERM
        if self._waiting:
            self._waiting = False
            self._stop()


@contextmanager
def deferred_interrupts() -> Iterator[Interrupts]:
    """Defer SIGINT and SIGTERM to Interrupts.check() for the duration (main thread only)."""
    interrupts = Interrupts()
    if threading.current_thread() is not threading.main_thread():
        yield interrupts
        return
    # An interrupt landing inside SQLite's C code can leave a write transaction open
    # and the database locked, so the store is never interrupted mid-call.
    previous = {
        signum: signal.signal(signum, interrupts._handle)
        for signum in (signal.SIGINT, signal.SIGTERM)
        if signal.getsignal(signum) is not signal.SIG_IGN
    }
    try:
        yield interrupts
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def uninterrupted(call: Callable[[], T]) -> T:
    """call's result; a SIGINT or SIGTERM meanwhile is held until it returns, then raised."""
    with deferred_interrupts() as interrupts:
        result = call()
    interrupts.check()
    return result
