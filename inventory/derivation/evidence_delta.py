"""Evidence a derivation has not seen yet: watermarks kept in the store, rows past them.

Evidence tables only grow: a new fact is a new row (a higher id) and a repeated
fact extends a row's last_seen (observations) or a day's counters (flows). So the
rows past the id watermark, plus the observations whose time moved past the time
watermark and the flows written since (their write sequence), are everything that
changed since the last derivation.
"""

from __future__ import annotations

import json
from collections import namedtuple
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, Result, Select, Table, delete, func, select

from rolecall.inventory.sql.in_lists import in_list
from rolecall.inventory.tables import (
    ASSET_TABLE,
    CONNECT_TABLE,
    DERIVE_STATE_TABLE,
    FLOW_TABLE,
    HOSTNAME_TABLE,
    OBSERVATION_TABLE,
    SERVICE_TABLE,
    SMTP_TABLE,
    SOCKS_TABLE,
)


@dataclass(frozen=True)
class Marks:
    """How far the last derivation read each evidence table."""

    observation_id: int = 0
    observation_time: datetime | None = None
    smtp_id: int = 0
    socks_id: int = 0
    connect_id: int = 0
    flow_seq: int = 0
    hostname_id: int = 0
    asset_id: int = 0
    service_id: int = 0
    service_time: datetime | None = None


def _max(connection: Connection, column: Any) -> Any:
    """The largest value of a column (None on an empty table)."""
    return connection.execute(select(func.max(column))).scalar()


def current_marks(connection: Connection) -> Marks:
    """The watermarks that cover everything stored now."""
    obs, flow = OBSERVATION_TABLE, FLOW_TABLE
    return Marks(
        observation_id=_max(connection, obs.c.id) or 0,
        observation_time=_max(connection, obs.c.last_seen),
        smtp_id=_max(connection, SMTP_TABLE.c.id) or 0,
        socks_id=_max(connection, SOCKS_TABLE.c.id) or 0,
        connect_id=_max(connection, CONNECT_TABLE.c.id) or 0,
        flow_seq=_max(connection, flow.c.seq) or 0,
        hostname_id=_max(connection, HOSTNAME_TABLE.c.id) or 0,
        asset_id=_max(connection, ASSET_TABLE.c.id) or 0,
        service_id=_max(connection, SERVICE_TABLE.c.id) or 0,
        service_time=_max(connection, SERVICE_TABLE.c.last_seen),
    )


def _state(connection: Connection) -> dict[str, str]:
    """Every stored derivation-state entry."""
    table = DERIVE_STATE_TABLE
    return {row.key: row.value for row in connection.execute(select(table))}


def stored_state(connection: Connection) -> tuple[Marks, str, str]:
    """The stored watermarks, settings fingerprint and settings JSON ("" if never derived)."""
    state = _state(connection)
    raw = json.loads(state.get("marks", "{}"))
    for name in ("observation_time", "service_time"):
        if raw.get(name):
            raw[name] = datetime.fromisoformat(raw[name])
    known = {name: value for name, value in raw.items() if name in Marks.__dataclass_fields__}
    return Marks(**known), state.get("fingerprint", ""), state.get("settings", "")


def state_value(connection: Connection, key: str) -> str:
    """One stored derivation-state entry ("" if never stored)."""
    return _state(connection).get(key, "")


def save_state(
    connection: Connection,
    marks: Marks,
    fingerprint: str,
    settings: str,
    extra: dict[str, str] | None = None,
) -> None:
    """Remember how far this derivation read, with which settings, and any extra entries."""
    table = DERIVE_STATE_TABLE
    values = {
        "marks": json.dumps(asdict(marks), default=lambda value: value.isoformat()),
        "fingerprint": fingerprint,
        "settings": settings,
        **(extra or {}),
    }
    connection.execute(delete(table).where(table.c.key.in_(list(values))))
    connection.execute(table.insert(), [{"key": k, "value": v} for k, v in values.items()])


@cache
def _row_type(names: tuple[str, ...]) -> type[tuple[Any, ...]]:
    """A named tuple type with these fields (one per distinct query, made once)."""
    return namedtuple("EvidenceRow", names)


def _plain(result: Result[Any]) -> Iterator[Any]:
    """A result's rows as named tuples, read by the same attribute names.

    Derivation reads each evidence row's fields several times, and a field of a named
    tuple costs a twentieth of a Row attribute (a full derivation reads millions).
    """
    make = _row_type(tuple(result.keys()))._make  # type: ignore[attr-defined]
    return map(make, result)


def _run(connection: Connection, stmt: Select[Any]) -> Iterator[Any]:
    """A statement's rows as named tuples."""
    return _plain(connection.execute(stmt))


def _past(connection: Connection, stmt: Select[Any], id_column: Any, since: int) -> Iterator[Any]:
    """Rows of a statement with ids past a watermark."""
    yield from _run(connection, stmt.where(id_column > since))


def _observation_columns(table: Table) -> Select[Any]:
    """The observation columns derivation reads."""
    return select(
        table.c.id,
        table.c.address,
        table.c.kind,
        table.c.source,
        table.c.port,
        table.c.transport,
        table.c.value,
        table.c.detail,
        table.c.first_seen,
        table.c.last_seen,
        table.c.count,
    )


def observations(
    connection: Connection, kinds: frozenset[str], marks: Marks | None
) -> Iterator[Any]:
    """Observations of the given kinds that are new or seen again since marks (all if None).

    Since marks, the id range and the last_seen index find the rows; the kind is
    checked here, so that the database never walks the kind index instead.
    """
    table = OBSERVATION_TABLE
    stmt = _observation_columns(table)
    if marks is None:
        yield from _run(connection, stmt.where(table.c.kind.in_(sorted(kinds))))
        return
    for row in _run(connection, stmt.where(table.c.id > marks.observation_id)):
        if row.kind in kinds:
            yield row
    if marks.observation_time is not None:
        # The id bound is checked on the last_seen index's entries (they hold the row id),
        # so the rows read above are not fetched twice; "+ 0" keeps SQLite from walking
        # the id range (every old row) instead of the index.
        seen_again = (table.c.last_seen > marks.observation_time) & (
            table.c.id + 0 <= marks.observation_id
        )
        for row in _run(connection, stmt.where(seen_again)):
            if row.kind in kinds:
                yield row


def observation_spans(connection: Connection, kinds: frozenset[str]) -> Iterator[Any]:
    """Per (address, kind, source) of all observations of the given kinds: first and last
    seen, first and last row id (for kinds whose roles do not depend on the value)."""
    table = OBSERVATION_TABLE
    stmt = select(
        table.c.address,
        table.c.kind,
        table.c.source,
        func.min(table.c.first_seen).label("first_seen"),
        func.max(table.c.last_seen).label("last_seen"),
        func.min(table.c.id).label("first_id"),
        func.max(table.c.id).label("last_id"),
    ).where(
        # These kinds are most of the table: a scan beats a lookup per row through the kind
        # index, which SQLite would choose for a bare "kind IN"; "|| ''" keeps it off it.
        table.c.kind.concat("").in_(sorted(kinds))
    )
    yield from _run(connection, stmt.group_by(table.c.address, table.c.kind, table.c.source))


def _smtp_columns(table: Table) -> Select[Any]:
    """The mail transaction columns derivation reads: the roles' and the smtp rules'.

    Not the message's own fields (recipients, subject, headers): reading them costs as
    much as the rules do, and no rule looks at them. A rule that will adds its column here.
    """
    return select(
        table.c.id,
        table.c.ts,
        table.c.client,
        table.c.server,
        table.c.server_port,
        table.c.user_agent,
        table.c.via_proxy,
        table.c.relayed_for,
        table.c.source,
    )


def smtp_rows(connection: Connection, marks: Marks | None) -> Iterator[Any]:
    """Mail transactions stored since marks (all if None)."""
    table = SMTP_TABLE
    since = 0 if marks is None else marks.smtp_id
    return _past(connection, _smtp_columns(table), table.c.id, since)


def tunnelled_smtp_rows(
    connection: Connection, pairs: set[tuple[str, str]], marks: Marks
) -> Iterator[Any]:
    """Mail transactions read up to marks that a (client, proxy) pair's tunnel carried.

    The client's copy names the proxy (via_proxy); the proxy's own copy names the
    client (relayed_for). In id order.
    """
    table = SMTP_TABLE
    hosts = sorted({host for pair in pairs for host in pair})
    if not hosts:
        return
    among = in_list(connection.dialect, table.c.client, hosts)
    rows = _run(connection, _smtp_columns(table).where(among, table.c.id <= marks.smtp_id))
    found = [
        row
        for row in rows
        if (row.client, row.via_proxy) in pairs or (row.relayed_for, row.client) in pairs
    ]
    # Sorted here: ORDER BY id could lead the database to walk every row in id order.
    yield from sorted(found, key=lambda row: int(row.id))


def socks_rows(connection: Connection, marks: Marks | None) -> Iterator[Any]:
    """SOCKS requests stored since marks (all if None)."""
    table = SOCKS_TABLE
    return _past(connection, select(table), table.c.id, 0 if marks is None else marks.socks_id)


def connect_rows(connection: Connection, marks: Marks | None) -> Iterator[Any]:
    """HTTP CONNECT requests stored since marks (all if None)."""
    table = CONNECT_TABLE
    since = 0 if marks is None else marks.connect_id
    return _past(connection, select(table), table.c.id, since)


def flow_rows(
    connection: Connection, marks: Marks | None, ports: frozenset[int] | None = None
) -> Iterator[Any]:
    """Flows written (new or added to) since marks, or all flows if marks is None.

    With all flows, `ports` limits them to those server ports.
    """
    table = FLOW_TABLE
    if marks is None:
        stmt = select(table)
        if ports is not None:
            stmt = stmt.where(table.c.server_port.in_(sorted(ports)))
        yield from _run(connection, stmt)
        return
    yield from _past(connection, select(table), table.c.seq, marks.flow_seq)


def take_write_lock(connection: Connection) -> None:
    """Hold the database's write lock from here to commit, so writers take turns.

    A derivation reads what is stored, then writes what follows from it; two at once
    (the daemon's and the command line's) would both insert the same new roles. A
    writer of flows takes it before numbering its write (next_write_seq).
    """
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7101976)")
    else:
        # SQLite: a write statement, even one changing no row, takes the write lock
        # (waiting out the busy timeout) and starts the transaction's snapshot after it.
        connection.exec_driver_sql("UPDATE derive_state SET value = value WHERE key = 'lock'")


def next_write_seq(connection: Connection) -> int:
    """A number for this transaction's flow writes, above every committed one.

    Taken under the write lock, so no other writer commits a flow between this number
    and this transaction's commit: a derivation (which holds the lock too) that has
    read up to some number has seen every flow written with it or below.
    """
    take_write_lock(connection)
    return int(_max(connection, FLOW_TABLE.c.seq) or 0) + 1


def new_addresses(connection: Connection, marks: Marks) -> set[str]:
    """Addresses with a new asset, host name or service row since marks, or a service seen again.

    A service seen again (its last_seen moved past the time watermark; all of them
    if the marks have none) can put a host's service back in the workstation window.
    """
    found: set[str] = set()
    for table, mark in (
        (ASSET_TABLE, marks.asset_id),
        (HOSTNAME_TABLE, marks.hostname_id),
        (SERVICE_TABLE, marks.service_id),
    ):
        found.update(connection.execute(select(table.c.address).where(table.c.id > mark)).scalars())
    service = SERVICE_TABLE
    seen_again = select(service.c.address).distinct()
    if marks.service_time is not None:
        seen_again = seen_again.where(service.c.last_seen > marks.service_time)
    found.update(connection.execute(seen_again).scalars())
    return found


def flow_spans(connection: Connection, side: str, ports: frozenset[int]) -> Iterator[Any]:
    """Answered flows to the given server ports, aggregated per host on one side.

    Rows: address, server_port, transport, source, first_seen, last_seen, first_id, last_id.
    """
    table = FLOW_TABLE
    # "|| ''": grouping by the client, SQLite would walk the unique index (client first)
    # and fetch every row from it in the index's order, slower than a scan and a sort
    # (measured: 3.6 s against 2.2 s over a million flows). No index leads with the
    # server: it is grouped as it is (there the concatenation only costs time).
    host = table.c.client.concat("") if side == "client" else table.c.server
    stmt = (
        select(
            host.label("address"),
            table.c.server_port,
            table.c.transport,
            table.c.source,
            func.min(table.c.first_seen).label("first_seen"),
            func.max(table.c.last_seen).label("last_seen"),
            func.min(table.c.id).label("first_id"),
            func.max(table.c.id).label("last_id"),
        )
        .where(table.c.answered.is_(True), table.c.server_port.in_(sorted(ports)))
        .group_by(host, table.c.server_port, table.c.transport, table.c.source)
    )
    yield from _run(connection, stmt)
