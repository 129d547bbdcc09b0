"""The email output: one message per batch of events, through the `[email]` relay.

The mailer (smtplib) loads with the first batch sent, not with the config that holds these
settings.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Literal

from pydantic import Field

from rolecall.alerts.event import AlertEvent
from rolecall.alerts.formats.controls import visible
from rolecall.alerts.formats.ecs import ecs_document, ecs_time
from rolecall.alerts.outputs.common import AlertOutput, Delivered, OutputSettings
from rolecall.reports.errors import DeliveryError as RelayError
from rolecall.reports.relay_settings import RelaySettings


class Settings(OutputSettings):
    """An `[[alerts]]` entry of type "email" (the relay and sender are `[email]`'s)."""

    type: Literal["email"]
    to: list[str] = Field(default_factory=list)
    """Recipients (empty: `[email] to`)."""
    subject_prefix: str = Field(default="rolecall alerts", max_length=100)


@dataclass(frozen=True)
class MailRelay:
    """Where alert mail goes from: the `[email]` relay, sender and default recipients."""

    relay: RelaySettings
    sender: str
    to: tuple[str, ...]


def _line(event: AlertEvent) -> str:
    """One event as one line of text; what came from the network cannot break the line."""
    techniques = f" [{' '.join(event.techniques)}]" if event.techniques else ""
    return visible(
        f"#{event.sequence} {event.action} {event.severity} {event.rule} {event.address}"
        f"{techniques}: {event.summary}"
    )


def subject(prefix: str, events: Sequence[AlertEvent]) -> str:
    """The subject: how many events of which severity (nothing from the network in it)."""
    counts = Counter(event.severity for event in events)
    parts = ", ".join(f"{counts[level]} {level}" for level in ("high", "medium", "low", "info"))
    if len(events) == 1 and events[0].action == "test":
        return f"{prefix}: test event"
    return f"{prefix}: {len(events)} finding change(s) ({parts})"


def message_parts(events: Sequence[AlertEvent]) -> tuple[str, str, bytes]:
    """The text body, the HTML body and the ECS JSON lines of a batch."""
    lines = [_line(event) for event in events]
    stamps = f"from {ecs_time(events[0].at)} to {ecs_time(events[-1].at)}"
    text = "\n".join([f"Finding changes recorded {stamps}:", "", *lines, ""])
    html = (
        "<html><body><p>Finding changes recorded "
        + escape(stamps)
        + ":</p><ul>"
        + "".join(f"<li>{escape(line)}</li>" for line in lines)
        + "</ul></body></html>"
    )
    data = "".join(
        json.dumps(ecs_document(event), ensure_ascii=True, separators=(",", ":")) + "\n"
        for event in events
    )
    return text, html, data.encode("ascii")


class EmailOutput:
    """Sends each batch as one message with the events as text and as ECS JSON lines."""

    def __init__(self, settings: Settings, mail: MailRelay) -> None:
        self._settings = settings
        self._mail = mail

    def deliver(self, events: Sequence[AlertEvent]) -> Delivered:
        """Send the batch as one message; all of it is taken, or none."""
        if not events:
            return Delivered(0)
        recipients = list(self._settings.to) or list(self._mail.to)
        if not recipients:
            return Delivered(
                0, f"alerts {self._settings.name}: no recipients (set to, or [email] to)"
            )
        from rolecall.reports.delivery import (  # noqa: PLC0415 - see the module's docstring
            Attachment,
            build_message,
            send,
        )

        text, html, data = message_parts(events)
        message = build_message(
            subject(self._settings.subject_prefix, events),
            self._mail.sender,
            recipients,
            text,
            html,
            [Attachment("events.jsonl", data, "application", "x-ndjson")],
        )
        try:
            send(self._mail.relay, message, recipients)
        except RelayError as exc:
            return Delivered(0, f"alerts {self._settings.name}: {exc}")
        return Delivered(len(events))

    def close(self) -> None:
        """Nothing to release: each batch opens its own SMTP session."""


def open_output(settings: Settings, mail: MailRelay) -> AlertOutput:
    """An email output for these settings through the relay."""
    return EmailOutput(settings, mail)
