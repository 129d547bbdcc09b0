"""Loading a command's modules without the cyclic garbage collector walking them meanwhile."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

from rolecall.collector import collector_paused


@contextmanager
def loading() -> Iterator[None]:
    """Run the block (imports, mostly) with the cyclic collector paused, and resume it after.

    Loading the database layer or the config's models makes hundreds of thousands of objects
    that live as long as the process: the collector, run every few hundred allocations, would
    walk them again and again and free none (a tenth of a small ingest's time). A process that
    froze what it had loaded at start (the console entry point does) freezes this too, so no
    later collection walks it; one that did not (tests running commands in-process) does not.
    """
    with collector_paused():
        try:
            yield
        finally:
            if gc.get_freeze_count():
                gc.freeze()
