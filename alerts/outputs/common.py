"""What every alert output shares: its settings' common keys, its result, its error."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from rolecall.alerts.event import AlertEvent
from rolecall.errors import RolecallError


class DeliveryError(RolecallError):
    """An output could not be opened or reached; the sentence says which and why."""


class OutputSettings(BaseModel):
    """The keys every `[[alerts]]` entry has, whatever its type."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    min_severity: Literal["high", "medium", "low", "info"] = "low"
    rules: list[str] = Field(default_factory=list)
    """Only these rules (empty: every rule)."""
    suppress_minutes: float = Field(default=0.0, ge=0, le=525_600)
    """A repeat of the same finding and action within this window is not sent again."""


@dataclass(frozen=True)
class Delivered:
    """How many of the events given, from the first, the receiver took; if not all, why."""

    count: int
    error: str | None = None


class AlertOutput(Protocol):
    """A receiver of alert events; the delivery engine keeps its cursor in the inventory."""

    def deliver(self, events: Sequence[AlertEvent]) -> Delivered:
        """Send the events in order; stop at the first that could not be sent and say why."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...
