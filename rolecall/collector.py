"""Pausing Python's cyclic garbage collector over work that makes many long-lived objects."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run the block with the cyclic collector off, and turn it back on after if it was on.

    Reference counting still frees everything that is not in a cycle. Pauses may nest or
    overlap across threads: only a pause that found the collector on turns it back on.
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()
