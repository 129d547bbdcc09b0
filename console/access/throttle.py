"""Failed sign-ins counted per address and per (address, name): many make that client wait.

An attempt counts as failed from the moment it starts, so attempts sent at once
cannot slip past the limit while their passwords are being checked; a success
clears only that name's count from that address, so signing in as yourself
does not buy more guesses at someone else's password.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

MAX_FAILURES = 10
"""Failures at one name from one address within the window before it must wait."""
MAX_ADDRESS_FAILURES = 30
"""Failures at any names from one address within the window before it must wait."""
WINDOW_SECONDS = 300.0
MAX_KEYS = 10_000
"""Past this many addresses and names, the quiet ones are forgotten first (memory stays bounded)."""

Key = tuple[str, str]  # (address, name); name "" counts every name from the address


@dataclass
class SignInThrottle:
    """Failed (or still running) sign-ins per key inside any WINDOW_SECONDS."""

    failures: dict[Key, deque[float]] = field(default_factory=dict)

    def _recent(self, key: Key, now: float) -> deque[float]:
        """The key's failures still inside the window."""
        times = self.failures.get(key, deque())
        while times and times[0] <= now - WINDOW_SECONDS:
            times.popleft()
        return times

    def begin(self, address: str, name: str) -> bool:
        """Count an attempt as failed now; False if the address or the name must wait."""
        now = time.monotonic()
        if (
            len(self._recent((address, ""), now)) >= MAX_ADDRESS_FAILURES
            or len(self._recent((address, name), now)) >= MAX_FAILURES
        ):
            return False
        for key in ((address, ""), (address, name)):
            times = self._recent(key, now)
            times.append(now)
            self.failures[key] = times
        while len(self.failures) > MAX_KEYS:
            oldest = min(self.failures, key=lambda key: self.failures[key][-1])
            del self.failures[oldest]
        return True

    def succeeded(self, address: str, name: str) -> None:
        """The attempt was right: take it back from the address's count, forget the name's."""
        self.failures.pop((address, name), None)
        times = self.failures.get((address, ""))
        if times:
            times.pop()
