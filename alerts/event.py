"""A change of a finding, as every alert output formats and sends it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

ACTIONS: Final = ("opened", "updated", "resolved", "reopened", "acknowledged", "test")
"""What happened to the finding; "test" is the event `rolecall alerts test` sends."""


@dataclass(frozen=True)
class AlertEvent:
    """One finding change: its place in the inventory's event sequence and the finding's state."""

    sequence: int
    """Position in the inventory's event table, increasing; 0 for a test event."""
    action: str
    """One of ACTIONS."""
    at: datetime
    """When the change was recorded (UTC, timezone-aware)."""
    rule: str
    address: str
    severity: str
    """One of inventory.findings.SEVERITIES: high, medium, low, info."""
    summary: str
    roles: tuple[str, ...]
    groups: tuple[str, ...]
    first_seen: datetime
    last_seen: datetime
    evidence: tuple[str, ...]
    """Pointers: "table:row id", and where known "pcap:FILE@OFFSET", "zeek:UID", "community:ID"."""
    techniques: tuple[str, ...]
    """MITRE ATT&CK technique ids that fit the rule (T1090, T1071.003), possibly none."""
    note: str = ""
    """The analyst's note, for an acknowledged finding."""

    @property
    def finding_id(self) -> str:
        """The finding's stable id: the same finding keeps it through every change."""
        return f"{self.rule}:{self.address}"
