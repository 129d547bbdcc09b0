"""Alert events: every change of a finding recorded with it, and each output's cursor.

A change is recorded in the transaction that makes it (see ``recorded_changes``): the
finding's state before its first change there is kept, and at the end one event per
difference is written (a finding reopened and resolved again within one derivation
has changed nothing and sends nothing). Outputs read the events after their cursor and
move it after each batch they delivered (``advance``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, func, insert, or_, select, update

from rolecall.alerts.event import AlertEvent
from rolecall.alerts.techniques import techniques
from rolecall.inventory.process_owner import Owner, is_gone
from rolecall.inventory.sql.bulk import BulkStatement
from rolecall.inventory.sql.in_lists import in_slices
from rolecall.inventory.tables import (
    ALERT_CURSOR_TABLE,
    ALERT_EVENT_TABLE,
    ASSET_GROUP_TABLE,
    FINDING_TABLE,
    ROLE_TABLE,
)

MATERIAL_LAST_SEEN: Final = timedelta(hours=1)
"""An open finding whose last evidence moved further than this is "updated" (so is one whose
severity changed or that gained evidence it did not hold)."""
JOURNAL_KEY: Final = "rolecall.finding_journal"


@dataclass(frozen=True)
class FindingState:
    """What of a finding decides whether a change of it is an event."""

    status: str
    severity: str
    evidence: frozenset[str]
    last_seen: datetime
    note: str

    @classmethod
    def of(cls, row: Any) -> FindingState:
        """The state of a finding-table row."""
        return cls(
            row.status, row.severity, frozenset(json.loads(row.evidence)), row.last_seen, row.note
        )


@dataclass
class FindingJournal:
    """The findings a transaction changed, each with its state before its first change there."""

    before: dict[tuple[str, str], FindingState | None] = field(default_factory=dict)

    def note(self, rule: str, address: str, state: FindingState | None) -> None:
        """Remember a finding's state before a change (only the first one counts)."""
        self.before.setdefault((rule, address), state)

    def note_rows(self, rows: Iterable[Any]) -> None:
        """Remember the states of finding-table rows about to change."""
        for row in rows:
            self.note(row.rule, row.address, FindingState.of(row))


def changed_actions(before: FindingState | None, after: FindingState) -> list[str]:
    """The events a finding's change from `before` to `after` makes, in order (maybe none)."""
    if before is None:
        return ["opened"] + (["resolved"] if after.status == "resolved" else [])
    if before.status != after.status:
        if after.status == "resolved":
            return ["resolved"]
        if after.status == "acknowledged":
            return ["acknowledged"]
        return ["reopened"]
    if after.status == "acknowledged" and after.note != before.note:
        return ["acknowledged"]
    if after.status != "open":
        return []
    material = (
        after.severity != before.severity
        or not after.evidence <= before.evidence
        or abs(after.last_seen - before.last_seen) > MATERIAL_LAST_SEEN
    )
    return ["updated"] if material else []


@contextmanager
def recorded_changes(connection: Connection) -> Iterator[FindingJournal]:
    """Yield the transaction's journal of finding changes; the outermost writes their events.

    Nested uses share the outer journal, so a derivation records the net change of each
    finding once, at its end, in its own transaction.
    """
    active: FindingJournal | None = connection.info.get(JOURNAL_KEY)
    if active is not None:
        yield active
        return
    journal = FindingJournal()
    connection.info[JOURNAL_KEY] = journal
    try:
        yield journal
    finally:
        del connection.info[JOURNAL_KEY]
    record_events(connection, journal, datetime.now(UTC))


def record_events(connection: Connection, journal: FindingJournal, at: datetime) -> int:
    """Write the events of the journal's changes; how many."""
    table = FINDING_TABLE
    rows: list[Any] = []
    for chunk in _keys_by_rule(journal.before):
        rule, addresses = chunk
        rows.extend(
            connection.execute(
                select(table).where(table.c.rule == rule, table.c.address.in_(addresses))
            )
        )
    rows.sort(key=lambda row: (row.rule, row.address))
    pending = [
        (row, action)
        for row in rows
        for action in changed_actions(journal.before[row.rule, row.address], FindingState.of(row))
    ]
    if not pending:
        return 0
    addresses = sorted({row.address for row, _ in pending})
    roles, groups = _host_facts(connection, addresses)
    values = [
        {
            "action": action,
            "at": at,
            "rule": row.rule,
            "address": row.address,
            "severity": row.severity,
            "summary": row.summary,
            "roles": json.dumps(roles.get(row.address, [])),
            "groups": json.dumps(groups.get(row.address, [])),
            "first_seen": row.first_seen,
            "last_seen": row.last_seen,
            "evidence": row.evidence,
            "techniques": json.dumps(techniques(row.rule)),
            "note": row.note,
        }
        for row, action in pending
    ]
    events = ALERT_EVENT_TABLE
    BulkStatement(events.insert(), copy_into=events).execute(connection, values)
    return len(values)


def _keys_by_rule(
    keys: Iterable[tuple[str, str]],
) -> Iterator[tuple[str, Sequence[str]]]:
    """(rule, addresses) slices of finding keys, for IN lists every database accepts."""
    by_rule: dict[str, list[str]] = {}
    for rule, address in keys:
        by_rule.setdefault(rule, []).append(address)
    for rule, addresses in sorted(by_rule.items()):
        for chunk in in_slices(sorted(addresses)):
            yield rule, chunk


def _host_facts(
    connection: Connection, addresses: Sequence[str]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Each address's roles and groups, sorted."""
    role, group = ROLE_TABLE, ASSET_GROUP_TABLE
    roles: dict[str, set[str]] = {}
    groups: dict[str, set[str]] = {}
    for chunk in in_slices(addresses):
        for row in connection.execute(
            select(role.c.address, role.c.role).where(role.c.address.in_(chunk))
        ):
            roles.setdefault(row.address, set()).add(row.role)
        for row in connection.execute(
            select(group.c.address, group.c.name).where(group.c.address.in_(chunk))
        ):
            groups.setdefault(row.address, set()).add(row.name)
    return (
        {address: sorted(found) for address, found in roles.items()},
        {address: sorted(found) for address, found in groups.items()},
    )


def event_of(row: Any) -> AlertEvent:
    """The AlertEvent of an alert-event row."""
    return AlertEvent(
        sequence=row.sequence,
        action=row.action,
        at=row.at,
        rule=row.rule,
        address=row.address,
        severity=row.severity,
        summary=row.summary,
        roles=tuple(json.loads(row.roles)),
        groups=tuple(json.loads(row.groups)),
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        evidence=tuple(json.loads(row.evidence)),
        techniques=tuple(json.loads(row.techniques)),
        note=row.note,
    )


def events_after(connection: Connection, sequence: int, limit: int) -> list[AlertEvent]:
    """At most `limit` events after a sequence number, in order."""
    table = ALERT_EVENT_TABLE
    rows = connection.execute(
        select(table).where(table.c.sequence > sequence).order_by(table.c.sequence).limit(limit)
    )
    return [event_of(row) for row in rows]


def last_sequence(connection: Connection) -> int:
    """The newest event's sequence number (0 if none yet)."""
    table = ALERT_EVENT_TABLE
    return int(connection.execute(select(func.max(table.c.sequence))).scalar() or 0)


@dataclass(frozen=True)
class Cursor:
    """Where an output stands: the last event it took, its last error, what it sent lately."""

    output: str
    sequence: int
    updated: datetime | None
    error: str
    error_at: datetime | None
    recent: dict[str, datetime]


def cursor(connection: Connection, output: str) -> Cursor:
    """An output's cursor; a new output starts before the first event."""
    table = ALERT_CURSOR_TABLE
    row = connection.execute(select(table).where(table.c.output == output)).first()
    if row is None:
        return Cursor(output, 0, None, "", None, {})
    recent = {key: datetime.fromisoformat(when) for key, when in json.loads(row.recent).items()}
    return Cursor(output, row.sequence, row.updated, row.error, row.error_at, recent)


def _ensure_cursor(connection: Connection, output: str, now: datetime) -> None:
    """Create an output's cursor row at the start if it has none."""
    table = ALERT_CURSOR_TABLE
    found = connection.execute(select(table.c.output).where(table.c.output == output)).first()
    if found is None:
        connection.execute(
            insert(table).values(
                output=output, sequence=0, updated=now, error="", recent="{}", holder=""
            )
        )


def holder_text(owner: Owner, thread: int) -> str:
    """A claim's holder as the cursor records it: a thread of a process another can judge."""
    return json.dumps(
        {"host": owner.host, "pid": owner.pid, "process": owner.process, "thread": thread},
        sort_keys=True,
    )


def holder_owner(holder: str) -> Owner | None:
    """The process a recorded holder names; None if the text names none."""
    try:
        found = json.loads(holder)
        owner = Owner(found["host"], found["pid"], found["process"])
    except (ValueError, TypeError, KeyError):
        return None
    valid = (
        isinstance(owner.host, str) and type(owner.pid) is int and isinstance(owner.process, str)
    )
    return owner if valid else None


def claim(connection: Connection, output: str, holder: str, until: datetime, here: Owner) -> bool:
    """Claim delivery to an output until a time; False if another process holds it now.

    Two processes (the daemon and a command) delivering to one output at once would send
    the same events twice; the claim makes them take turns. A claim lapses at its time,
    or at once when its holder is a process `here` can see is gone (killed, say).
    """
    now = datetime.now(UTC)
    _ensure_cursor(connection, output, now)
    table = ALERT_CURSOR_TABLE
    free = [
        table.c.holder == "",
        table.c.holder == holder,
        table.c.held_until.is_(None),
        table.c.held_until < now,
    ]
    current = connection.execute(select(table.c.holder).where(table.c.output == output)).scalar()
    owner = holder_owner(current) if current else None
    if current and owner is not None and is_gone(owner, here):
        # Only while the row still names that gone holder: a racing claimant may win first.
        free.append(table.c.holder == current)
    taken = connection.execute(
        update(table)
        .where(table.c.output == output, or_(*free))
        .values(holder=holder, held_until=until)
    )
    return taken.rowcount == 1


def release(connection: Connection, output: str, holder: str) -> None:
    """Give up a claim on an output."""
    table = ALERT_CURSOR_TABLE
    connection.execute(
        update(table)
        .where(table.c.output == output, table.c.holder == holder)
        .values(holder="", held_until=None)
    )


def advance(
    connection: Connection, output: str, sequence: int, recent: dict[str, datetime]
) -> None:
    """Move an output's cursor past the events it took, clearing its error."""
    now = datetime.now(UTC)
    _ensure_cursor(connection, output, now)
    table = ALERT_CURSOR_TABLE
    connection.execute(
        update(table)
        .where(table.c.output == output)
        .values(
            sequence=sequence,
            updated=now,
            error="",
            error_at=None,
            recent=json.dumps({key: when.isoformat() for key, when in recent.items()}),
        )
    )


def record_error(connection: Connection, output: str, error: str) -> None:
    """Remember why an output could not take its events (its cursor stays)."""
    now = datetime.now(UTC)
    _ensure_cursor(connection, output, now)
    table = ALERT_CURSOR_TABLE
    connection.execute(
        update(table).where(table.c.output == output).values(error=error, error_at=now)
    )


@dataclass(frozen=True)
class Waiting:
    """What waits for an output: how many events after its cursor, and since when."""

    count: int
    oldest: datetime | None


def waiting(
    connection: Connection, sequence: int, severities: Sequence[str], rules: Sequence[str]
) -> Waiting:
    """The events after a cursor of these severities (and rules, if any): count and oldest."""
    table = ALERT_EVENT_TABLE
    stmt = select(func.count(), func.min(table.c.at)).where(
        table.c.sequence > sequence, table.c.severity.in_(list(severities))
    )
    if rules:
        stmt = stmt.where(table.c.rule.in_(list(rules)))
    row = connection.execute(stmt).one()
    return Waiting(int(row[0] or 0), row[1])
