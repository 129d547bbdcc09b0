"""The finding table: raised findings merged in, statuses kept, acknowledgements recorded."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from sqlalchemy import Connection, bindparam, func, select, update

from rolecall.inventory.alert_events import recorded_changes
from rolecall.inventory.derivation.evidence_delta import take_write_lock
from rolecall.inventory.sql.in_lists import in_list, in_slices
from rolecall.inventory.tables import ASSET_TABLE, FINDING_TABLE, OBSERVATION_TABLE

SEVERITIES: Final = ("high", "medium", "low", "info")
MAX_EVIDENCE: Final = 50
PROBED_RULES: Final = frozenset(
    {"open-relay", "open-socks-proxy", "plaintext-auth", "anonymous-ftp"}
)
"""Rules about how a service answers rolecall's probes: they hold until a probe says otherwise."""


@dataclass(frozen=True)
class FindingView:
    """A finding as reports and the CLI read it; evidence is a list of "table:id" references."""

    rule: str
    address: str
    severity: str
    summary: str
    evidence: list[str]
    first_seen: datetime
    last_seen: datetime
    status: str


@dataclass
class Raised:
    """A finding a rule raises: merged with what the table holds by (rule, address)."""

    rule: str
    address: str
    severity: str
    summary: str
    first_seen: datetime
    last_seen: datetime
    evidence: list[str] = field(default_factory=list)

    def merge(self, other: Raised) -> None:
        """Fold another raise of the same finding into this one."""
        self.first_seen = min(self.first_seen, other.first_seen)
        if other.last_seen >= self.last_seen:
            self.summary = other.summary
            self.severity = other.severity
        self.last_seen = max(self.last_seen, other.last_seen)
        self.evidence = merged_evidence(self.evidence, other.evidence)


def merged_evidence(old: Sequence[str], new: Sequence[str]) -> list[str]:
    """Evidence references in order, without repeats, at most MAX_EVIDENCE of them."""
    return list(dict.fromkeys([*old, *new]))[:MAX_EVIDENCE]


def view(row: Any) -> FindingView:
    """A FindingView of a finding-table row."""
    return FindingView(
        row.rule,
        row.address,
        row.severity,
        row.summary,
        json.loads(row.evidence),
        row.first_seen,
        row.last_seen,
        row.status,
    )


# Inserted findings after which PostgreSQL's statistics of the table are renewed.
ANALYZE_AFTER: Final = 5000


def store_raised(
    connection: Connection,
    raised: Iterable[Raised],
    replace: bool,
    stale_after: timedelta | None = None,
) -> None:
    """Merge raised findings into the table; `replace` drops the stored evidence first.

    `stale_after`: a finding that would be open but that resolve_stale would resolve
    (its host seen that long after its last evidence) is written resolved at once. The
    changes are recorded as alert events in the same transaction (see alert_events).
    """
    folded: dict[tuple[str, str], Raised] = {}
    for item in raised:
        known = folded.get((item.rule, item.address))
        if known is None:
            folded[item.rule, item.address] = item
        else:
            known.merge(item)
    found = list(folded.values())
    if not found:
        return
    stored = _stored_findings(connection, folded)
    stale = _stale_rule(connection, found, stale_after)
    inserts, updates = [], []
    with recorded_changes(connection) as journal:
        for item in found:
            row = stored.get((item.rule, item.address))
            if row is None:
                journal.note(item.rule, item.address, None)
                inserts.append(_insert_values(item, stale))
            else:
                journal.note_rows([row])
                updates.append(_update_values(row, item, replace, stale))
        _write_raised(connection, inserts, updates)


Staleness = Callable[[str, str, datetime], bool]
"""Whether a finding (rule, address, last evidence) would be resolved as stale."""


def _stale_rule(
    connection: Connection, found: Sequence[Raised], after: timedelta | None
) -> Staleness:
    """The test resolve_stale applies, for the hosts of these findings (never, if None).

    A full derivation raises new-smtp-client on every sender that came after the
    learning period, most of them seen again long since: written open, each would be
    read back and resolved by resolve_stale in the same transaction.
    """
    if after is None:
        return lambda _rule, _address, _last: False
    asset = ASSET_TABLE
    hosts = sorted({item.address for item in found if item.rule not in PROBED_RULES})
    among = in_list(connection.dialect, asset.c.address, hosts)
    rows = connection.execute(select(asset.c.address, asset.c.last_seen).where(among))
    seen: dict[str, datetime] = {row.address: row.last_seen for row in rows}

    def stale(rule: str, address: str, last: datetime) -> bool:
        """Whether resolve_stale would resolve this finding if it were open."""
        host = seen.get(address)
        return rule not in PROBED_RULES and host is not None and _outlived(host, last, after)

    return stale


def _outlived(host_seen: datetime, last_seen: datetime, after: timedelta) -> bool:
    """Whether a host was seen `after` past a finding's last evidence (resolve_stale's test)."""
    return host_seen - last_seen > after


def _write_raised(
    connection: Connection, inserts: list[dict[str, Any]], updates: list[dict[str, Any]]
) -> None:
    """Insert the new findings and update the stored ones."""
    table = FINDING_TABLE
    if inserts:
        connection.execute(table.insert(), inserts)
        if connection.dialect.name == "postgresql" and len(inserts) >= ANALYZE_AFTER:
            # A first derivation fills the table inside one transaction; with the
            # statistics of the empty table PostgreSQL reads the next rule's lookups by
            # rule alone (42 ms each at 80k findings, 0.7 ms after ANALYZE).
            connection.exec_driver_sql("ANALYZE finding")
    if updates:
        connection.execute(
            update(table)
            .where(table.c.id == bindparam("fid"))
            .values(
                severity=bindparam("severity"),
                summary=bindparam("summary"),
                evidence=bindparam("evidence"),
                first_seen=bindparam("first"),
                last_seen=bindparam("last"),
                status=bindparam("state"),
            ),
            updates,
        )


def _stored_findings(connection: Connection, keys: Iterable[tuple[str, str]]) -> dict[Any, Any]:
    """The stored findings among these (rule, address) pairs, read rule by rule in chunks."""
    table = FINDING_TABLE
    by_rule: dict[str, list[str]] = {}
    for rule, address in keys:
        by_rule.setdefault(rule, []).append(address)
    stored = {}
    for rule, addresses in by_rule.items():
        for chunk in in_slices(addresses):
            rows = connection.execute(
                select(table).where(table.c.rule == rule, table.c.address.in_(chunk))
            )
            stored.update({(row.rule, row.address): row for row in rows})
    return stored


def _insert_values(found: Raised, stale: Staleness) -> dict[str, Any]:
    """Column values of a newly raised finding (resolved at once if stale)."""
    return {
        "rule": found.rule,
        "address": found.address,
        "severity": found.severity,
        "summary": found.summary,
        "evidence": json.dumps(found.evidence),
        "first_seen": found.first_seen,
        "last_seen": found.last_seen,
        "status": "resolved" if stale(found.rule, found.address, found.last_seen) else "open",
        "note": "",
    }


def _update_values(row: Any, found: Raised, replace: bool, stale: Staleness) -> dict[str, Any]:
    """Parameters that fold a raise into a stored finding (reopening it if it was resolved,
    resolving it if it would be open but is stale)."""
    merged = found
    if not replace:
        merged = Raised(
            row.rule,
            row.address,
            row.severity,
            row.summary,
            row.first_seen,
            row.last_seen,
            json.loads(row.evidence),
        )
        merged.merge(found)
    # A re-judged finding starts open again, unless resolve_stale would resolve it.
    reopened = row.status == "resolved" and (replace or found.last_seen > row.last_seen)
    state = "open" if reopened else row.status
    if state == "open" and stale(row.rule, row.address, merged.last_seen):
        state = "resolved"
    return {
        "fid": row.id,
        "severity": merged.severity,
        "summary": merged.summary,
        "evidence": json.dumps(merged.evidence),
        "first": merged.first_seen,
        "last": merged.last_seen,
        "state": state,
    }


def resolve(connection: Connection, rule: str, addresses: Iterable[str]) -> None:
    """Mark the open findings of a rule on these addresses resolved: their evidence is gone."""
    table = FINDING_TABLE
    wanted = sorted(set(addresses))
    if not wanted:
        return
    # One statement whatever the count: a full derivation judges every mail sender.
    among = in_list(connection.dialect, table.c.address, wanted)
    ids = connection.execute(
        select(table.c.id).where(table.c.rule == rule, table.c.status == "open", among)
    ).scalars()
    mark_resolved(connection, list(ids))


def resolve_before(connection: Connection, rule: str, address: str, day: date) -> None:
    """Resolve an open finding whose evidence all predates a day that showed none."""
    table = FINDING_TABLE
    start = datetime.combine(day, time(), tzinfo=UTC)
    ids = connection.execute(
        select(table.c.id).where(
            table.c.rule == rule,
            table.c.address == address,
            table.c.status == "open",
            table.c.last_seen < start,
        )
    ).scalars()
    mark_resolved(connection, list(ids))


def resolve_stale(connection: Connection, after: timedelta) -> None:
    """Resolve open findings whose host was seen `after` past the finding's last evidence.

    Findings on a probed service are left to `resolve_reprobed`: a weekly scan's
    open relay is still open on the days between scans.
    """
    table, asset = FINDING_TABLE, ASSET_TABLE
    stale = connection.execute(
        select(table.c.id, table.c.last_seen, asset.c.last_seen.label("host_seen"))
        .join(asset, asset.c.address == table.c.address)
        .where(table.c.status == "open", table.c.rule.not_in(sorted(PROBED_RULES)))
    )
    ids = [row.id for row in stale if _outlived(row.host_seen, row.last_seen, after)]
    mark_resolved(connection, ids)


def resolve_reprobed(connection: Connection, probed_hosts: Collection[str] | None) -> None:
    """Resolve open findings on a probed service that a later probe of it no longer supports.

    Every probe of a port records its "protocol" observation before its verdict, so a
    protocol observation newer than the finding means the port was probed again and
    the verdict the finding rests on did not come back. `probed_hosts`: the hosts
    probed since the last look (None: every host).
    """
    table, obs = FINDING_TABLE, OBSERVATION_TABLE
    if probed_hosts is not None and not probed_hosts:
        return
    stmt = select(table.c.id, table.c.address, table.c.last_seen, table.c.evidence).where(
        table.c.status == "open", table.c.rule.in_(sorted(PROBED_RULES))
    )
    rows = [
        row
        for row in connection.execute(stmt)
        if probed_hosts is None or row.address in probed_hosts
    ]
    resolved = []
    for row in rows:
        ids = [
            int(ref.split(":", 1)[1])
            for ref in json.loads(row.evidence)
            if ref.startswith("observation:")
        ]
        ports = select(obs.c.port).where(obs.c.id.in_(ids), obs.c.address == row.address)
        probed = connection.execute(
            select(func.max(obs.c.last_seen)).where(
                obs.c.address == row.address,
                obs.c.kind == "protocol",
                obs.c.source == "probe",
                obs.c.port.in_(ports),
            )
        ).scalar()
        if probed is not None and probed > row.last_seen:
            resolved.append(row.id)
    mark_resolved(connection, resolved)


def mark_resolved(connection: Connection, ids: Sequence[int]) -> None:
    """Mark findings resolved by id, recording the change as alert events."""
    table = FINDING_TABLE
    with recorded_changes(connection) as journal:
        for chunk in in_slices(ids):
            journal.note_rows(connection.execute(select(table).where(table.c.id.in_(chunk))))
            connection.execute(update(table).where(table.c.id.in_(chunk)).values(status="resolved"))


def acknowledge(
    connection: Connection, rule: str, address: str, note: str, when: datetime
) -> FindingView | None:
    """Acknowledge one finding (an "acknowledged" alert event); None if there is no such finding."""
    table = FINDING_TABLE
    where = (table.c.rule == rule, table.c.address == address)
    # Events are numbered as they are written: writers take turns, so no event commits
    # after a higher-numbered one that an output may already have taken.
    take_write_lock(connection)
    with recorded_changes(connection) as journal:
        journal.note_rows(connection.execute(select(table).where(*where)))
        connection.execute(
            update(table).where(*where).values(status="acknowledged", note=note, acknowledged=when)
        )
    row = connection.execute(
        select(table).where(table.c.rule == rule, table.c.address == address)
    ).first()
    return None if row is None else view(row)


def unacknowledge(connection: Connection, rule: str, address: str) -> FindingView | None:
    """Open an acknowledged finding again (a "reopened" alert event), its note cleared.

    The finding as it was before; None if there is no such finding. Only an
    acknowledged finding changes: an open or resolved one is left as it is.
    """
    table = FINDING_TABLE
    where = (table.c.rule == rule, table.c.address == address)
    # Writers take turns, as in acknowledge: events commit in the order they are numbered.
    take_write_lock(connection)
    before = connection.execute(select(table).where(*where)).first()
    if before is None:
        return None
    if before.status == "acknowledged":
        with recorded_changes(connection) as journal:
            journal.note_rows([before])
            connection.execute(
                update(table).where(*where).values(status="open", note="", acknowledged=None)
            )
    return view(before)


def list_findings(
    connection: Connection, status: str | None = None, rule: str | None = None
) -> list[FindingView]:
    """Findings, most severe first, optionally of one status or rule."""
    table = FINDING_TABLE
    stmt = select(table)
    if status is not None:
        stmt = stmt.where(table.c.status == status)
    if rule is not None:
        stmt = stmt.where(table.c.rule == rule)
    found = [view(row) for row in connection.execute(stmt)]
    return sorted(found, key=lambda f: (SEVERITIES.index(f.severity), f.rule, f.address))
