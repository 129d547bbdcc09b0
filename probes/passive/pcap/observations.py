"""Observations counted per natural key instead of repeated (one DNS query a second is one row)."""

from __future__ import annotations

import dataclasses

from rolecall.probes.records import Observation

_Key = tuple[str, str, str, int, str, str]


class ObservationTally:
    """Observations by natural key with their count; the first sighting is kept."""

    def __init__(self, max_keys: int) -> None:
        """Start empty; at ``max_keys`` keys ``add`` hands back what was held."""
        self.max_keys = max_keys
        self.first: dict[_Key, Observation] = {}
        self.counts: dict[_Key, int] = {}

    def add(self, obs: Observation) -> list[Observation]:
        """Count one observation; return what must be emitted now to stay bounded."""
        key = (obs.address, obs.kind, obs.source, obs.port, obs.transport, obs.value)
        if key in self.counts:
            self.counts[key] += obs.count
            return []
        early = self.flush() if len(self.counts) >= self.max_keys else []
        self.first[key] = obs
        self.counts[key] = obs.count
        return early

    def flush(self) -> list[Observation]:
        """Return every counted observation and forget them."""
        counts = self.counts
        out = [
            obs if obs.count == counts[key] else dataclasses.replace(obs, count=counts[key])
            for key, obs in self.first.items()
        ]
        self.first, self.counts = {}, {}
        return out
