"""PostgreSQL day partitions of the event tables: made before a day's rows, dropped by prune.

On PostgreSQL, smtp, socks and connect are range-partitioned by ``ts`` and flow by
``day``, one partition per UTC day (``smtp_p20261203``) and a default partition
(``smtp_default``) for every day without one. A writer makes the partitions of the days it
is about to write, but only within the retention window: a capture naming thousands of
different days must not make thousands of tables. SQLite keeps plain tables.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

PARTITIONED: Final = {"smtp": "ts", "socks": "ts", "connect": "ts", "flow": "day"}
"""The partitioned tables and the column each is partitioned by."""
DEFAULT_RETENTION_DAYS: Final = 400
RETENTION_KEY: Final = "retention_days"
"""derive_state entry: the [retention] days of the last prune, the window writers use."""
PARTITION_LOCK: Final = 7101977
"""Advisory lock key: one process at a time creates partitions."""
LOCK_TIMEOUT: Final = "2s"
"""How long a writer waits to create a partition; after that, the rows go to the default one."""
FUTURE_DAYS: Final = 2
BUSY: Final = frozenset({"55P03", "40P01"})
"""lock_not_available, deadlock_detected: another transaction holds the table; try later."""
GAVE_WAY: Final = BUSY | {"42P07"}
"""BUSY, or duplicate_table: another process made the partition first, which is as good."""
_NAME: Final = re.compile(r"^(smtp|socks|connect|flow)_(default|p\d{8})$")


def is_partition(name: str | None) -> bool:
    """Whether a table name is one of the partitions this module makes."""
    return name is not None and _NAME.match(name) is not None


def partition_name(table: str, day: date) -> str:
    """The name of a table's partition for one day."""
    return f"{table}_p{day:%Y%m%d}"


def _start(table: str, day: date) -> str:
    """A day's lower bound as an SQL literal of the table's partition column."""
    if PARTITIONED[table] == "day":
        return f"'{day.isoformat()}'"
    return f"'{day.isoformat()} 00:00:00+00'"


def row_day(value: date | datetime) -> date:
    """The UTC day of a partition column's value (a date, or an aware or UTC-naive time)."""
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value).date()
    return value


def day_start(day: date) -> datetime:
    """The UTC midnight that starts a day."""
    return datetime.combine(day, time(), tzinfo=UTC)


def window(retention_days: int, today: date | None = None) -> tuple[date, date]:
    """The first and last day a writer makes partitions for."""
    today = today or datetime.now(UTC).date()
    return today - timedelta(days=retention_days + 1), today + timedelta(days=FUTURE_DAYS)


def partition_days(connection: Connection, table: str) -> dict[date, str]:
    """The table's day partitions by day (the default partition is not one)."""
    rows = connection.execute(
        text(
            "SELECT child.relname FROM pg_inherits"
            " JOIN pg_class child ON child.oid = pg_inherits.inhrelid"
            " JOIN pg_class parent ON parent.oid = pg_inherits.inhparent"
            " WHERE parent.relname = :table AND parent.relnamespace = child.relnamespace"
            " AND parent.relnamespace = to_regnamespace(current_schema())::oid"
        ),
        {"table": table},
    ).scalars()
    prefix = f"{table}_p"
    found = {}
    for name in rows:
        if name.startswith(prefix) and name[len(prefix) :].isdigit():
            found[datetime.strptime(name[len(prefix) :], "%Y%m%d").date()] = name
    return found


def default_days(connection: Connection, table: str, first: date, last: date) -> set[date]:
    """The days between first and last that rows in the table's default partition fall on."""
    column = PARTITIONED[table]
    day = column if column == "day" else f"({column} AT TIME ZONE 'UTC')::date"
    rows = connection.execute(
        text(
            f'SELECT DISTINCT {day} FROM "{table}_default"'  # noqa: S608 - names are ours
            f" WHERE {column} >= :first AND {column} < :after"
        ),
        _bounds(table, first, last + timedelta(days=1)),
    ).scalars()
    return set(rows)


def _bounds(table: str, first: date, after: date) -> dict[str, Any]:
    """Query parameters :first and :after in the type of the table's partition column."""
    if PARTITIONED[table] == "day":
        return {"first": first, "after": after}
    return {"first": day_start(first), "after": day_start(after)}


def create_day(connection: Connection, table: str, day: date) -> bool:
    """Create a table's partition for one day (in connection's transaction); whether it made one.

    Rows of that day already in the default partition are moved into the new one:
    PostgreSQL refuses a partition whose rows the default partition holds.
    """
    name = partition_name(table, day)
    if connection.execute(text("SELECT to_regclass(:name)"), {"name": name}).scalar():
        return False
    column = PARTITIONED[table]
    bounds = _bounds(table, day, day + timedelta(days=1))
    where = f"{column} >= :first AND {column} < :after"
    moving = connection.execute(
        text(f'SELECT EXISTS (SELECT 1 FROM "{table}_default" WHERE {where})'),  # noqa: S608
        bounds,
    ).scalar()
    if moving:
        connection.execute(
            text(
                f'CREATE TEMPORARY TABLE "moving_{name}" ON COMMIT DROP AS'  # noqa: S608
                f' WITH moved AS (DELETE FROM "{table}_default" WHERE {where} RETURNING *)'
                " SELECT * FROM moved"
            ),
            bounds,
        )
    after = _start(table, day + timedelta(days=1))
    connection.exec_driver_sql(
        f'CREATE TABLE "{name}" PARTITION OF "{table}"'
        f" FOR VALUES FROM ({_start(table, day)}) TO ({after})"
    )
    if moving:
        connection.exec_driver_sql(
            f'INSERT INTO "{table}" SELECT * FROM "moving_{name}"'  # noqa: S608
        )
    return True


def create_default(connection: Connection, table: str) -> None:
    """Create a table's default partition (for rows of days without their own)."""
    connection.exec_driver_sql(f'CREATE TABLE "{table}_default" PARTITION OF "{table}" DEFAULT')


def old_partitions(connection: Connection, table: str, cutoff: date) -> list[str]:
    """The names of a table's day partitions before cutoff, oldest first."""
    return [name for day, name in sorted(partition_days(connection, table).items()) if day < cutoff]


def drop_partition(connection: Connection, table: str, name: str) -> int | None:
    """Detach and drop one day partition (in connection's transaction); how many rows it held.

    Under the advisory lock partition makers take, so that it never races one of them or
    another prune; None if the partition is already gone.
    """
    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PARTITION_LOCK})")
    if not connection.execute(text("SELECT to_regclass(:name)"), {"name": name}).scalar():
        return None
    connection.exec_driver_sql(f'ALTER TABLE "{table}" DETACH PARTITION "{name}"')
    count = connection.exec_driver_sql(f'SELECT count(*) FROM "{name}"').scalar()  # noqa: S608
    connection.exec_driver_sql(f'DROP TABLE "{name}"')
    return int(count or 0)


def create_days(engine: Engine, wanted: Mapping[str, Iterable[date]]) -> None:
    """Create the missing day partitions, in one short transaction of their own.

    Under an advisory lock, so that two writers wanting the same day take turns; with a
    lock timeout, so that a writer never waits long on a table another transaction is
    writing: its rows then go to the default partition, and move to the day's own partition
    when a later writer (or prune) creates it. A partition another process made first is
    no error.
    """
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PARTITION_LOCK})")
            for table, days in wanted.items():
                existing = partition_days(connection, table)
                for day in sorted(set(days) - set(existing)):
                    create_day(connection, table, day)
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", "") not in GAVE_WAY:
            raise


def stored_retention_days(connection: Connection) -> int:
    """The [retention] days the last prune used (the default before any)."""
    stored = connection.execute(
        text("SELECT value FROM derive_state WHERE key = :key"), {"key": RETENTION_KEY}
    ).scalar()
    return int(stored) if stored and str(stored).isdigit() else DEFAULT_RETENTION_DAYS


class DayPartitions:
    """Makes sure the days a writer is about to write have their partitions (PostgreSQL).

    Days already handled are cached per writer. A table this writer's transaction has
    already written is left alone: creating one of its partitions would wait on that very
    transaction's lock; its new days go to the default partition.
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._done: dict[str, set[date]] = {table: set() for table in PARTITIONED}
        self._written: set[str] = set()
        self._window: tuple[date, date] | None = None

    def before_write(self, rows: Mapping[str, Iterable[Mapping[str, Any]]]) -> None:
        """Create the partitions of the days in the rows about to be written."""
        wanted: dict[str, set[date]] = {}
        for table, column in PARTITIONED.items():
            queued = list(rows[table])
            if not queued:
                continue
            days = {row_day(row[column]) for row in queued} - self._done[table]
            if table not in self._written and days:
                wanted[table] = days
            self._done[table] |= days
            self._written.add(table)
        if not wanted:
            return
        if self._window is None:
            self._window = window(stored_retention_days(self._connection))
        first, last = self._window
        inside = {
            table: {day for day in days if first <= day <= last} for table, days in wanted.items()
        }
        if any(inside.values()):
            create_days(self._connection.engine, inside)
