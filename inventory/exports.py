"""The contract's exports as streams of rows: column names are a contract."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from itertools import groupby
from typing import Any

from sqlalchemy import Connection, Select, Table, select

from rolecall.inventory.scan_chunks import chunk_export, chunks_by_run
from rolecall.inventory.tables import (
    ASSET_GROUP_TABLE,
    ASSET_SOURCE_TABLE,
    ASSET_TABLE,
    CONNECT_TABLE,
    FINDING_TABLE,
    FLOW_TABLE,
    HOSTNAME_TABLE,
    ROLE_TABLE,
    RUN_TABLE,
    SERVICE_TABLE,
    SMTP_TABLE,
    SOCKS_TABLE,
)
from rolecall.inventory.text_order import by_code_point

Row = dict[str, Any]

COLUMNS: dict[str, tuple[str, ...]] = {
    "inventory": (
        "address",
        "hostnames",
        "roles",
        "groups",
        "open_ports",
        "first_seen",
        "last_seen",
        "sources",
    ),
    "services": (
        "address",
        "port",
        "transport",
        "protocol",
        "product",
        "version",
        "auth",
        "banner",
        "first_seen",
        "last_seen",
        "source",
    ),
    "findings": (
        "rule",
        "address",
        "severity",
        "summary",
        "evidence",
        "first_seen",
        "last_seen",
        "status",
    ),
    "smtp": (
        "ts",
        "client",
        "client_port",
        "server",
        "server_port",
        "trans_depth",
        "helo",
        "mail_from",
        "rcpt_to",
        "refused_rcpt",
        "subject",
        "from",
        "to",
        "date",
        "msg_id",
        "user_agent",
        "last_reply",
        "tls",
        "via_proxy",
        "relayed_for",
        "source",
    ),
    "socks": (
        "ts",
        "client",
        "client_port",
        "proxy",
        "proxy_port",
        "version",
        "user",
        "status",
        "request_host",
        "request_name",
        "request_port",
        "bound_host",
        "bound_port",
        "source",
    ),
    "connect": (
        "ts",
        "client",
        "client_port",
        "proxy",
        "proxy_port",
        "user",
        "status",
        "request_host",
        "request_port",
        "source",
    ),
    "flows": (
        "client",
        "server",
        "server_port",
        "transport",
        "day",
        "connections",
        "packets",
        "bytes",
        "first_seen",
        "last_seen",
        "answered",
        "source",
    ),
    "runs": ("id", "kind", "target", "started", "ended", "status", "counts", "error", "host"),
}
STORED_AS: dict[str, dict[str, str]] = {"runs": {"host": "owner_host"}}
"""Export columns stored under another name, per export."""
JSON_LISTS = frozenset({"rcpt_to", "refused_rcpt", "to", "evidence"})
TABLES: dict[str, tuple[Table, tuple[str, ...]]] = {
    "services": (SERVICE_TABLE, ("address", "port", "transport", "source")),
    "findings": (FINDING_TABLE, ("address", "rule")),
    "smtp": (SMTP_TABLE, ("ts", "client", "client_port", "trans_depth")),
    "socks": (SOCKS_TABLE, ("ts", "client", "client_port")),
    "connect": (CONNECT_TABLE, ("ts", "client", "client_port")),
    "flows": (FLOW_TABLE, ("day", "client", "server", "server_port", "transport")),
    "runs": (RUN_TABLE, ("id",)),
}


def iso(value: datetime | None) -> str:
    """ISO 8601 UTC text of a datetime to the microsecond ("" for none).

    Every command prints times this way, so their texts sort and compare alike.
    """
    if value is None:
        return ""
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    """A value as exports carry it: times as ISO 8601 UTC, dates as ISO dates."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _second(row: Any) -> Any:
    """The value column of an (address, value) row."""
    return row[1]


def _port_proto(row: Any) -> str:
    """The "port/proto" text of an (address, port, transport) row."""
    return f"{row[1]}/{row[2]}"


def _grouped(
    connection: Connection, stmt: Select[Any], value: Callable[[Any], Any] = _second
) -> Iterator[tuple[str, list[Any]]]:
    """Stream (address, values) groups of a statement ordered by address."""
    rows = connection.execute(stmt)
    for address, group in groupby(rows, key=lambda row: row[0]):
        yield address, [value(row) for row in group]


class _Lookup:
    """Merge-joins a stream of address groups against addresses taken in the same order."""

    def __init__(self, groups: Iterator[tuple[str, list[Any]]]) -> None:
        self._groups = groups
        self._current = next(groups, None)

    def take(self, address: str) -> list[Any]:
        """Return the values for address, skipping groups of addresses before it."""
        while self._current is not None and self._current[0] < address:
            self._current = next(self._groups, None)
        if self._current is not None and self._current[0] == address:
            return self._current[1]
        return []


def _port_key(value: str) -> tuple[int, str]:
    """Sort key for "port/proto" strings: numerically by port."""
    port, _, proto = value.partition("/")
    return int(port), proto


def inventory_rows(connection: Connection) -> Iterator[Row]:
    """One row per asset with its names, roles, groups, open ports and sources."""
    hostname, role = HOSTNAME_TABLE, ROLE_TABLE
    service, source = SERVICE_TABLE, ASSET_SOURCE_TABLE
    asset = ASSET_TABLE
    names = _Lookup(
        _grouped(
            connection,
            select(hostname.c.address, hostname.c.name).order_by(by_code_point(hostname.c.address)),
        )
    )
    roles = _Lookup(
        _grouped(
            connection, select(role.c.address, role.c.role).order_by(by_code_point(role.c.address))
        )
    )
    group = ASSET_GROUP_TABLE
    groups = _Lookup(
        _grouped(
            connection,
            select(group.c.address, group.c.name).order_by(by_code_point(group.c.address)),
        )
    )
    ports = _Lookup(
        _grouped(
            connection,
            select(service.c.address, service.c.port, service.c.transport).order_by(
                by_code_point(service.c.address)
            ),
            _port_proto,
        )
    )
    sources = _Lookup(
        _grouped(
            connection,
            select(source.c.address, source.c.source).order_by(by_code_point(source.c.address)),
        )
    )
    assets = connection.execute(
        select(asset.c.address, asset.c.first_seen, asset.c.last_seen).order_by(
            by_code_point(asset.c.address)
        )
    )
    for address, first_seen, last_seen in assets:
        yield {
            "address": address,
            "hostnames": sorted(set(names.take(address))),
            "roles": sorted(set(roles.take(address))),
            "groups": sorted(set(groups.take(address))),
            "open_ports": sorted(set(ports.take(address)), key=_port_key),
            "first_seen": iso(first_seen),
            "last_seen": iso(last_seen),
            "sources": sorted(set(sources.take(address))),
        }


def _table_rows(connection: Connection, what: str) -> Iterator[Row]:
    """Rows of one stored table with the export's columns, in a stable order."""
    table, order = TABLES[what]
    columns = COLUMNS[what]
    stored = STORED_AS.get(what, {})
    # A cluster scan's chunks (JSON only: CSV keeps the columns above).
    chunks = chunks_by_run(connection) if what == "runs" else {}
    for row in connection.execute(
        select(table).order_by(*(by_code_point(table.c[name]) for name in order))
    ).mappings():
        out = {column: _plain(row[stored.get(column, column)]) for column in columns}
        for column in JSON_LISTS.intersection(columns):
            out[column] = json.loads(out[column])
        if what == "runs":
            out["counts"] = json.loads(out["counts"])
            out["chunks"] = [
                {key: _plain(value) for key, value in chunk_export(chunk).items()}
                for chunk in chunks.get(row["id"], [])
            ]
        yield out


def export_rows(connection: Connection, what: str) -> Iterator[Row]:
    """Stream the rows of one export of the contract ("inventory", "services", ..., "runs")."""
    if what == "inventory":
        return inventory_rows(connection)
    return _table_rows(connection, what)
