"""Retention: per-event rows older than [retention] days are pruned; daily series stay.

Pruned: smtp, socks and connect rows by ts, flows by day, observations by last_seen,
all before the UTC midnight that starts the cutoff day (today - days), so a day is
pruned whole or not at all. Kept: assets, host names, services, runs and the daily
series (daily_metric): a later full derivation recomputes only the days whose evidence
is still there, so the series of pruned days keep their values, while roles and findings
that only pruned rows supported end then.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Table, delete, func, select, text
from sqlalchemy.exc import DBAPIError

from rolecall.inventory import partitions
from rolecall.inventory.database_errors import translated
from rolecall.inventory.derivation.evidence_delta import stored_state, take_write_lock
from rolecall.inventory.errors import StoreError
from rolecall.inventory.store import Store
from rolecall.inventory.tables import (
    CONNECT_TABLE,
    DERIVE_STATE_TABLE,
    FLOW_TABLE,
    OBSERVATION_TABLE,
    SMTP_TABLE,
    SOCKS_TABLE,
)

DROP_ATTEMPTS = 5
"""How many times prune tries to drop a day partition of a busy table."""
PRUNED_TABLES = ("smtp", "socks", "connect", "flow", "observation")
_TABLES: dict[str, Table] = {
    "smtp": SMTP_TABLE,
    "socks": SOCKS_TABLE,
    "connect": CONNECT_TABLE,
    "flow": FLOW_TABLE,
    "observation": OBSERVATION_TABLE,
}
_TIME_COLUMNS = {**partitions.PARTITIONED, "observation": "last_seen"}
# The watermark of each pruned table (see evidence_delta.Marks) and the column it follows.
_MARKS = {
    "smtp_id": ("smtp", "id"),
    "socks_id": ("socks", "id"),
    "connect_id": ("connect", "id"),
    "flow_seq": ("flow", "seq"),
    "observation_id": ("observation", "id"),
}


@dataclass(frozen=True)
class PruneSummary:
    """What a prune removed: rows per table, and the first day it kept."""

    cutoff: date
    removed: dict[str, int]
    partitions_dropped: int = 0


def cutoff_day(days: int, today: date | None = None) -> date:
    """The first day retention keeps: rows of earlier days are pruned."""
    return (today or datetime.now(UTC).date()) - timedelta(days=days)


def prune(store: Store, days: int, today: date | None = None) -> PruneSummary:
    """Delete per-event rows of days before today - days.

    On PostgreSQL each old day partition is first detached and dropped in a short
    transaction of its own, so readers and writers of its table wait only for that; then
    the default partitions' old rows and the old observations are deleted in one
    transaction, and the window's days the default partitions hold get their partitions.
    On SQLite the rows are deleted in one transaction.
    """
    cutoff = cutoff_day(days, today)
    removed = dict.fromkeys(PRUNED_TABLES, 0)
    dropped = 0
    with store.read("prune old events") as connection:
        engine = connection.engine
        postgres = connection.dialect.name == "postgresql"
        old = {
            name: partitions.old_partitions(connection, name, cutoff)
            for name in (partitions.PARTITIONED if postgres else ())
        }
    with translated(engine.url, "prune old events"):
        for name, partition_names in old.items():
            for partition in partition_names:
                count = _drop_partition(engine, name, partition)
                if count is not None:
                    removed[name] += count
                    dropped += 1
    with store.transaction("prune old events") as connection:
        take_write_lock(connection)
        for name in PRUNED_TABLES:
            removed[name] += _delete_old(connection, name, cutoff, postgres)
        _lower_marks(connection)
        _remember_days(connection, days)
    if postgres:
        with translated(engine.url, "prune old events"):
            _split_default(engine, days, today)
    return PruneSummary(cutoff, removed, dropped)


def _delete_old(connection: Connection, name: str, cutoff: date, postgres: bool) -> int:
    """Delete a table's rows of days before cutoff (PostgreSQL: those in its default partition)."""
    column = _TIME_COLUMNS[name]
    bound: date | datetime = cutoff if name == "flow" else partitions.day_start(cutoff)
    if postgres and name in partitions.PARTITIONED:
        deleted = connection.execute(
            text(f'DELETE FROM "{name}_default" WHERE {column} < :bound'),  # noqa: S608
            {"bound": bound},
        )
        return int(deleted.rowcount)
    table = _TABLES[name]
    return int(connection.execute(delete(table).where(table.c[column] < bound)).rowcount)


def _drop_partition(engine: Engine, table: str, name: str) -> int | None:
    """Detach and drop one day partition in a transaction of its own; its rows (None: gone).

    Its table's readers and writers wait on it at most LOCK_TIMEOUT: past that it gives
    way, and tries again a few times before it gives up with a sentence saying so.
    """
    for attempt in range(1, DROP_ATTEMPTS + 1):
        try:
            with engine.begin() as connection:
                if table == "flow":
                    # Flow writers number their rows max(seq) + 1 under the write lock: no
                    # writer may come between the drop and the lowered watermark.
                    take_write_lock(connection)
                connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{partitions.LOCK_TIMEOUT}'")
                count = partitions.drop_partition(connection, table, name)
                if table == "flow":
                    _lower_marks(connection)
                return count
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", "") not in partitions.BUSY:
                raise
        if attempt < DROP_ATTEMPTS:
            time.sleep(attempt)
    raise StoreError(
        f"cannot prune: the {table} table stayed busy ({DROP_ATTEMPTS} tries), so its"
        f" partition {name} stays until the next prune"
    )


def _lower_marks(connection: Connection) -> None:
    """Lower each derivation watermark to the newest row left, if it was above it.

    SQLite hands out max(id) + 1 (flows: max(seq) + 1), so once the newest rows are
    pruned, new rows could take numbers a derivation has already read past.
    """
    marks, fingerprint, _ = stored_state(connection)
    if not fingerprint:
        return
    lowered: dict[str, Any] = {}
    for field, (name, column) in _MARKS.items():
        table = _TABLES[name]
        newest = connection.execute(select(func.max(table.c[column]))).scalar() or 0
        if newest < getattr(marks, field):
            lowered[field] = newest
    if not lowered:
        return
    values = {**asdict(marks), **lowered}
    table = DERIVE_STATE_TABLE
    connection.execute(
        table.update()
        .where(table.c.key == "marks")
        .values(value=json.dumps(values, default=lambda value: value.isoformat()))
    )


def _remember_days(connection: Connection, days: int) -> None:
    """Store the retention days, so that writers make partitions for that window only."""
    table = DERIVE_STATE_TABLE
    connection.execute(delete(table).where(table.c.key == partitions.RETENTION_KEY))
    connection.execute(table.insert().values(key=partitions.RETENTION_KEY, value=str(days)))


def _split_default(engine: Engine, days: int, today: date | None) -> None:
    """Give the days of the window that the default partitions hold rows of their own partition.

    A writer that could not create a day's partition at once (another transaction was
    writing the table) left that day's rows in the default partition. Each table's
    partitions are made as writers make theirs (create_days: under the partition lock,
    giving way to a busy table until the next prune).
    """
    first, last = partitions.window(days, today)
    for name in partitions.PARTITIONED:
        with engine.connect() as connection:
            held = partitions.default_days(connection, name, first, last)
        if held:
            partitions.create_days(engine, {name: held})
