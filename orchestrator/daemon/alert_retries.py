"""The daemon's alert retries: waiting events are offered to their outputs again on a timer."""

from __future__ import annotations

import threading
from collections.abc import Callable


class AlertRetries:
    """Delivers waiting alert events at start and then every interval seconds, until stopped.

    A receiver that was down gets its events within one interval of coming back, even on a
    day when no derivation runs. Deliveries never overlap with those after a derivation:
    the inventory lets one process at a time hold an output's cursor.
    """

    def __init__(
        self, deliver: Callable[[], object], interval: float, failed: Callable[[str], None]
    ) -> None:
        self._deliver = deliver
        self._interval = interval
        self._failed = failed
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-retries", daemon=True)

    def start(self) -> None:
        """Start delivering in the background."""
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Ask the thread to end after its current delivery; wait at most timeout seconds."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        """Deliver, wait, again; an unexpected error is reported and the next try still comes."""
        while not self._stopping.is_set():
            try:
                self._deliver()
            except Exception as exc:  # a retry thread must outlive one bad try
                self._failed(f"{type(exc).__name__}: {exc}")
            if self._stopping.wait(self._interval):
                return
