"""Failed sign-ins counted per client address: many in a short time make it wait."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

MAX_FAILURES = 10
WINDOW_SECONDS = 300.0
MAX_ADDRESSES = 10_000
"""Past this many addresses, the quiet ones are forgotten first (memory stays bounded)."""


@dataclass
class SignInThrottle:
    """At most MAX_FAILURES failed sign-ins per address in any WINDOW_SECONDS."""

    failures: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, address: str, now: float) -> deque[float]:
        """The address's failures still inside the window."""
        times = self.failures.get(address, deque())
        while times and times[0] <= now - WINDOW_SECONDS:
            times.popleft()
        return times

    def blocked(self, address: str) -> bool:
        """Whether this address must wait before trying again."""
        return len(self._recent(address, time.monotonic())) >= MAX_FAILURES

    def failed(self, address: str) -> None:
        """Count one failed sign-in from the address."""
        now = time.monotonic()
        times = self._recent(address, now)
        times.append(now)
        self.failures[address] = times
        if len(self.failures) > MAX_ADDRESSES:
            oldest = min(self.failures, key=lambda key: self.failures[key][-1])
            del self.failures[oldest]

    def succeeded(self, address: str) -> None:
        """Forget the address's failures once it signs in."""
        self.failures.pop(address, None)
