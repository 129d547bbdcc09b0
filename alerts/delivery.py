"""Delivery: each output's waiting events, filtered and de-duplicated, sent in order in batches.

An output's cursor (in the inventory) is the sequence number of the last event it has
taken. Events after it are read in order, a batch at a time; those the output's filters
(minimum severity, rules) or suppression window leave out are passed over, the rest go
to the receiver; the cursor then moves past what the receiver took, in one commit with
the suppression memory. A receiver that refuses stops the output: the events wait, in
order, for the next delivery. At least once, in order: only a process that dies after
a receiver took a batch and before that batch's commit sends it again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from rolecall.alerts.event import AlertEvent
from rolecall.alerts.outputs.common import AlertOutput, Delivered, OutputSettings
from rolecall.errors import RolecallError
from rolecall.inventory import alert_events
from rolecall.inventory.process_owner import this_process
from rolecall.inventory.store import Store

SEVERITY_ORDER: Final = ("high", "medium", "low", "info")
BATCH: Final = 500
"""Events read, and at most sent, per batch: also the most a crash can send twice."""
CLAIM: Final = timedelta(minutes=10)
"""How long a claim on an output holds without being renewed; a claim of a process seen gone
(same host, boot and pid namespace) lapses at once, any other only at its time."""

Opener = Callable[[OutputSettings], AlertOutput]


def severities_from(minimum: str) -> tuple[str, ...]:
    """The severities at or above a minimum, most severe first."""
    return SEVERITY_ORDER[: SEVERITY_ORDER.index(minimum) + 1]


def admitted(
    settings: OutputSettings, recent: dict[str, datetime], events: Sequence[AlertEvent]
) -> list[AlertEvent]:
    """The events an output sends, in order; `recent` (finding|action -> sent) is updated.

    A repeat of a finding's action within the suppression window of its last sending is
    left out; so are events below the minimum severity or of rules not listed.
    """
    wanted = severities_from(settings.min_severity)
    window = timedelta(minutes=settings.suppress_minutes)
    chosen = []
    for event in events:
        if event.severity not in wanted or (settings.rules and event.rule not in settings.rules):
            continue
        if window:
            key = f"{event.finding_id}|{event.action}"
            last = recent.get(key)
            if last is not None and event.at - last < window:
                continue
            recent[key] = event.at
        chosen.append(event)
    return chosen


def _pruned(recent: dict[str, datetime], window: timedelta) -> dict[str, datetime]:
    """The suppression memory without what fell out of the window."""
    if not window or not recent:
        return {}
    newest = max(recent.values())
    return {key: when for key, when in recent.items() if newest - when < window}


@dataclass(frozen=True)
class OutputResult:
    """What one delivery did for one output."""

    name: str
    sent: int = 0
    passed: int = 0
    """Events the filters or the suppression window left out (the cursor moved past them)."""
    error: str | None = None
    busy: bool = False
    """Another process was delivering to this output: it sends these events too."""


class _Delivery:
    """One output's delivery run: its claim, its open receiver, its counts."""

    def __init__(self, store: Store, settings: OutputSettings, opener: Opener) -> None:
        self.store = store
        self.settings = settings
        self.opener = opener
        self.owner = this_process()
        self.holder = alert_events.holder_text(self.owner, threading.get_ident())
        self.output: AlertOutput | None = None
        self.sent = self.passed = 0

    def claim(self) -> bool:
        """Take (or renew) the claim on the output."""
        with self.store.transaction("claim an alert output") as connection:
            until = datetime.now(UTC) + CLAIM
            name = self.settings.name
            return alert_events.claim(connection, name, self.holder, until, self.owner)

    def release(self) -> None:
        """Give the claim up."""
        with self.store.transaction("release an alert output") as connection:
            alert_events.release(connection, self.settings.name, self.holder)

    def _send(self, chosen: list[AlertEvent]) -> Delivered:
        """Send events through the (lazily opened) receiver."""
        if not chosen:
            return Delivered(0)
        try:
            if self.output is None:
                self.output = self.opener(self.settings)
            return self.output.deliver(chosen)
        except (RolecallError, OSError) as exc:
            return Delivered(0, str(exc))

    def batch(self) -> tuple[bool, str | None]:
        """Deliver one batch; (whether events remain to look at, the error if one stopped it)."""
        name = self.settings.name
        with self.store.read("read the alert events") as connection:
            cursor = alert_events.cursor(connection, name)
            events = alert_events.events_after(connection, cursor.sequence, BATCH)
        if not events:
            return False, None
        chosen = admitted(self.settings, dict(cursor.recent), events)
        delivered = self._send(chosen)
        handled = events
        error = None
        if delivered.count < len(chosen):
            stop = chosen[delivered.count].sequence
            handled = [event for event in events if event.sequence < stop]
            error = delivered.error or f"alerts {name}: the receiver did not take the events"
        recent = dict(cursor.recent)
        taken = admitted(self.settings, recent, handled)
        window = timedelta(minutes=self.settings.suppress_minutes)
        with self.store.transaction("move an alert output's cursor") as connection:
            if handled:
                last = handled[-1].sequence
                alert_events.advance(connection, name, last, _pruned(recent, window))
            if error is not None:
                alert_events.record_error(connection, name, error)
        self.sent += len(taken)
        self.passed += len(handled) - len(taken)
        return error is None and len(events) == BATCH, error

    def run(self) -> OutputResult:
        """Deliver every waiting batch (or until the receiver refuses)."""
        name = self.settings.name
        if not self.claim():
            return OutputResult(name, busy=True)
        error = None
        try:
            while True:
                more, error = self.batch()
                if error is not None:
                    break
                if not more and not self._arrived_since():
                    break
                self.claim()
        finally:
            if self.output is not None:
                self.output.close()
            self.release()
        return OutputResult(name, self.sent, self.passed, error)

    def _arrived_since(self) -> bool:
        """Whether events came after the cursor meanwhile (their deriver found us busy)."""
        with self.store.read("read the alert events") as connection:
            cursor = alert_events.cursor(connection, self.settings.name)
            return alert_events.last_sequence(connection) > cursor.sequence


def deliver(store: Store, outputs: Sequence[OutputSettings], opener: Opener) -> list[OutputResult]:
    """Send every output the events waiting for it; a failing receiver stops only its own."""
    return [_Delivery(store, settings, opener).run() for settings in outputs]


def send_test(settings: OutputSettings, opener: Opener) -> Delivered:
    """Send one test event (sequence 0, action "test") without touching the output's cursor."""
    now = datetime.now(UTC)
    event = AlertEvent(
        sequence=0,
        action="test",
        at=now,
        rule="rolecall-test",
        address="192.0.2.1",
        severity="info",
        summary=f"rolecall test event for alert output {settings.name}",
        roles=(),
        groups=(),
        first_seen=now,
        last_seen=now,
        evidence=(),
        techniques=(),
    )
    try:
        output = opener(settings)
    except (RolecallError, OSError) as exc:
        return Delivered(0, str(exc))
    try:
        return output.deliver([event])
    except (RolecallError, OSError) as exc:
        return Delivered(0, str(exc))
    finally:
        output.close()
