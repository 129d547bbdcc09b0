"""Flows stored in bulk: what the database gets is what SQLAlchemy itself would have written."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Table, delete

from rolecall.inventory.sql.bulk import BulkStatement
from rolecall.inventory.store import Store
from rolecall.inventory.tables import FLOW_TABLE
from rolecall.probes.passive.zeek.records import ZeekSettings, read_zeek
from rolecall.probes.records import ReadWarning
from tests.test_zeek_worker import damaged_conn_log

OFFSETS = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-11))])
TIMES = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=OFFSETS
)


@pytest.fixture
def store(database: str) -> Iterator[Store]:
    """An inventory whose flow table the tests fill and empty."""
    opened = Store.open(database)
    yield opened
    opened.close()


def _as_text(value: str | datetime) -> str:
    """A stored time as SQLite's text holds it (PostgreSQL's driver gives a datetime)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def flow_row(n: int, first: datetime, last: datetime, day: date) -> dict[str, Any]:
    """A row of the flow table."""
    return {
        "client": f"192.0.2.{n}",
        "server": "198.51.100.9",
        "server_port": 443,
        "transport": "tcp",
        "day": day,
        "source": "zeek",
        "connections": n + 1,
        "packets": 10,
        "bytes": 1000,
        "first_seen": first,
        "last_seen": last,
        "answered": n % 2 == 0,
    }


def stored(connection: Connection, table: Table) -> list[tuple[Any, ...]]:
    """The flow table's rows as the driver gives them (SQLite: text), then emptied."""
    rows = connection.exec_driver_sql(
        "SELECT client, day, first_seen, last_seen, answered, connections FROM flow ORDER BY client"
    ).all()
    connection.execute(delete(table))
    return [tuple(row) for row in rows]


# Each example empties the table it filled, so one store serves them all.
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(times=st.lists(st.tuples(TIMES, TIMES, st.dates()), min_size=1, max_size=8))
def test_bulk_rows_are_stored_as_sqlalchemy_stores_them(
    store: Store, times: list[tuple[datetime, datetime, date]]
) -> None:
    table = FLOW_TABLE
    rows = [flow_row(n, first, last, day) for n, (first, last, day) in enumerate(times)]
    with store.transaction("write rows") as connection:
        connection.execute(table.insert(), rows)
        expected = stored(connection, table)
        BulkStatement(table.insert()).execute(connection, rows)
        assert stored(connection, table) == expected


def _without_id(connection: Connection) -> list[tuple[Any, ...]]:
    """Every flow row, every column but the id (PostgreSQL never hands an id out twice)."""
    return [tuple(row)[1:] for row in connection.exec_driver_sql("SELECT * FROM flow")]


def test_columns_left_out_get_their_default_as_sqlalchemy_gives_it(store: Store) -> None:
    table = FLOW_TABLE
    row = flow_row(
        1,
        datetime(2026, 11, 23, tzinfo=UTC),
        datetime(2026, 11, 24, tzinfo=UTC),
        date(2026, 11, 23),
    )
    with store.transaction("write rows") as connection:
        connection.execute(table.insert(), [row])
        expected = _without_id(connection)
        connection.execute(delete(table))
        BulkStatement(table.insert()).execute(connection, [row])
        assert _without_id(connection) == expected
        connection.execute(delete(table))


def test_naive_times_are_refused_as_sqlalchemy_refuses_them(store: Store) -> None:
    table = FLOW_TABLE
    naive = datetime(2026, 11, 23, 8, 0)
    rows = [flow_row(1, naive, naive, date(2026, 11, 23))]
    with store.read("read rows") as connection, pytest.raises(ValueError, match="timezone"):
        BulkStatement(table.insert()).execute(connection, rows)


def test_a_zeek_ingest_stores_the_times_read(store: Store, tmp_path: Path) -> None:
    path = damaged_conn_log(tmp_path / "conn.log")
    items = list(read_zeek(path, ZeekSettings(worker_min_bytes=0)))
    with store.writer(batch_size=100) as writer:
        writer.add_all(item for item in items if not isinstance(item, ReadWarning))
    with store.read("read rows") as connection:
        first, last, total = connection.exec_driver_sql(
            "SELECT min(first_seen), max(last_seen), sum(connections) FROM flow"
        ).one()
    assert total == 2998
    assert _as_text(first) == "2026-11-23 00:00:00.000000"
    # the last line: 2999 * 37 s (and 999 µs) in
    assert _as_text(last) == "2026-11-24 06:49:23.000999"
