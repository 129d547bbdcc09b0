"""INSERT ... ON CONFLICT statements for each table, portable across SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Table, case, or_
from sqlalchemy.dialects import sqlite
from sqlalchemy.sql.dml import Insert

from rolecall.inventory.tables import (
    ASSET_SOURCE_TABLE,
    ASSET_TABLE,
    CONNECT_TABLE,
    FLOW_TABLE,
    HOSTNAME_TABLE,
    INGESTED_FILE_TABLE,
    OBSERVATION_TABLE,
    SERVICE_TABLE,
    SMTP_TABLE,
    SOCKS_TABLE,
)


def _insert(dialect: str, table: Table) -> Any:
    """Return the dialect's INSERT construct that supports ON CONFLICT."""
    if dialect == "postgresql":
        # Loaded only for a PostgreSQL store: every command on SQLite starts faster.
        from sqlalchemy.dialects import postgresql  # noqa: PLC0415

        return postgresql.insert(table)
    return sqlite.insert(table)


def _earliest(table: Table, excluded: Any, column: str) -> ColumnElement[Any]:
    """The earlier of the stored and the incoming value."""
    stored, new = table.c[column], excluded[column]
    return case((new < stored, new), else_=stored)


def _latest(table: Table, excluded: Any, column: str) -> ColumnElement[Any]:
    """The later of the stored and the incoming value."""
    stored, new = table.c[column], excluded[column]
    return case((new > stored, new), else_=stored)


def _unless_empty(table: Table, excluded: Any, column: str) -> ColumnElement[Any]:
    """The incoming value unless it is empty, so a sparse source never erases a richer one."""
    return case((excluded[column] != "", excluded[column]), else_=table.c[column])


def _seen_span(table: Table, excluded: Any) -> dict[str, ColumnElement[Any]]:
    """first_seen/last_seen widened to cover the incoming row."""
    return {
        "first_seen": _earliest(table, excluded, "first_seen"),
        "last_seen": _latest(table, excluded, "last_seen"),
    }


def _span_upsert(dialect: str, table: Table, keys: Sequence[str]) -> Insert:
    """An upsert that only widens first_seen/last_seen of an existing row."""
    stmt = _insert(dialect, table)
    return stmt.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=list(keys), set_=_seen_span(table, stmt.excluded)
    )


def asset_upsert(dialect: str) -> Insert:
    """Upsert of assets by address."""
    return _span_upsert(dialect, ASSET_TABLE, ["address"])


def asset_source_upsert(dialect: str) -> Insert:
    """Upsert of which sources saw an address."""
    return _span_upsert(dialect, ASSET_SOURCE_TABLE, ["address", "source"])


def hostname_upsert(dialect: str) -> Insert:
    """Upsert of names by address and name."""
    return _span_upsert(dialect, HOSTNAME_TABLE, ["address", "name"])


def observation_upsert(dialect: str) -> Insert:
    """Upsert of facts by natural key: count adds up, the latest detail wins."""
    table = OBSERVATION_TABLE
    stmt = _insert(dialect, table)
    excluded = stmt.excluded
    newer = excluded.last_seen >= table.c.last_seen
    return stmt.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=["address", "kind", "source", "port", "transport", "value_key"],
        set_={
            **_seen_span(table, excluded),
            "count": table.c.count + excluded.count,
            "detail": case((newer, excluded.detail), else_=table.c.detail),
        },
    )


def service_upsert(dialect: str) -> Insert:
    """Upsert of services: non-empty incoming descriptions replace stored ones."""
    table = SERVICE_TABLE
    stmt = _insert(dialect, table)
    excluded = stmt.excluded
    described = {
        column: _unless_empty(table, excluded, column)
        for column in ("protocol", "product", "version", "auth", "banner")
    }
    return stmt.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=["address", "port", "transport", "source"],
        set_={**_seen_span(table, excluded), **described},
    )


def flow_upsert(dialect: str) -> Insert:
    """Upsert of daily flows: counters add up, answered once means answered."""
    table = FLOW_TABLE
    stmt = _insert(dialect, table)
    excluded = stmt.excluded
    return stmt.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=["client", "server", "server_port", "transport", "day", "source"],
        set_={
            **_seen_span(table, excluded),
            "connections": table.c.connections + excluded.connections,
            "packets": table.c.packets + excluded.packets,
            "bytes": table.c.bytes + excluded.bytes,
            "answered": or_(table.c.answered, excluded.answered),
            "seq": excluded.seq,
        },
    )


def insert_once(dialect: str, table: Table) -> Insert:
    """An insert that leaves an existing row with the same natural key alone."""
    return _insert(dialect, table).on_conflict_do_nothing()  # type: ignore[no-any-return]


def smtp_insert(dialect: str) -> Insert:
    """Insert of mail transactions, once per natural key."""
    return insert_once(dialect, SMTP_TABLE)


def socks_insert(dialect: str) -> Insert:
    """Insert of SOCKS requests, once per natural key."""
    return insert_once(dialect, SOCKS_TABLE)


def connect_insert(dialect: str) -> Insert:
    """Insert of HTTP CONNECT requests, once per natural key."""
    return insert_once(dialect, CONNECT_TABLE)


def ingested_file_insert(dialect: str) -> Insert:
    """Insert of an ingested file's digest, once."""
    return insert_once(dialect, INGESTED_FILE_TABLE)
