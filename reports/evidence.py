"""Findings' evidence references ("smtp:12", "observation:7") turned into lines people read."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Connection, Table, select

from rolecall.inventory.exports import iso
from rolecall.inventory.sql.in_lists import in_slices
from rolecall.inventory.tables import (
    CONNECT_TABLE,
    DAILY_METRIC_TABLE,
    FLOW_TABLE,
    OBSERVATION_TABLE,
    SMTP_TABLE,
    SOCKS_TABLE,
)

MAX_REFERENCES = 10
MAX_TEXT = 160


def _cut(text: Any) -> str:
    """Text cut to a readable length."""
    value = str(text)
    return value if len(value) <= MAX_TEXT else value[: MAX_TEXT - 1] + "…"


def _smtp(row: Any) -> str:
    """A mail transaction in one line."""
    try:
        recipients = len(json.loads(row.rcpt_to))
    except ValueError:
        recipients = 0
    parts = [
        f"{iso(row.ts)} mail {row.client} -> {row.server}:{row.server_port}",
        f"from <{_cut(row.mail_from)}> to {recipients} recipient(s)",
    ]
    if row.subject:
        parts.append(f"subject {_cut(row.subject)!r}")
    if row.user_agent:
        parts.append(f"client {_cut(row.user_agent)!r}")
    if row.via_proxy:
        parts.append(f"via proxy {row.via_proxy}")
    if row.relayed_for:
        parts.append(f"relayed for {row.relayed_for}")
    if row.last_reply:
        parts.append(f"reply {_cut(row.last_reply)!r}")
    return ", ".join(parts)


def _observation(row: Any) -> str:
    """An observation in one line."""
    where = f":{row.port}/{row.transport}" if row.port else ""
    return (
        f"{row.address}{where} {row.kind} = {_cut(row.value)!r}"
        f" ({row.source}, seen {row.count}x, last {iso(row.last_seen)})"
    )


def _socks(row: Any) -> str:
    """A SOCKS request in one line."""
    target = row.request_name or row.request_host
    return (
        f"{iso(row.ts)} SOCKS{row.version} {row.client} -> {row.proxy}:{row.proxy_port}"
        f" asking for {_cut(target)}:{row.request_port}, {row.status or 'no status'}"
    )


def _connect(row: Any) -> str:
    """An HTTP CONNECT request in one line."""
    user = f" as {_cut(row.user)!r}" if row.user else ""
    return (
        f"{iso(row.ts)} CONNECT {row.client} -> {row.proxy}:{row.proxy_port}"
        f" asking for {_cut(row.request_host)}:{row.request_port}{user},"
        f" {row.status or 'no reply seen'}"
    )


def _flow(row: Any) -> str:
    """A day of traffic in one line."""
    return (
        f"{row.day} {row.client} -> {row.server}:{row.server_port}/{row.transport}:"
        f" {row.connections} connection(s), {row.bytes} bytes ({row.source})"
    )


def _metric(row: Any) -> str:
    """A day of a history series in one line."""
    return f"{row.day} {row.metric} ({row.grp or 'all hosts'}) = {row.value}"


DESCRIBERS: dict[str, tuple[Table, Callable[[Any], str]]] = {
    "smtp": (SMTP_TABLE, _smtp),
    "observation": (OBSERVATION_TABLE, _observation),
    "socks": (SOCKS_TABLE, _socks),
    "connect": (CONNECT_TABLE, _connect),
    "flow": (FLOW_TABLE, _flow),
    "daily_metric": (DAILY_METRIC_TABLE, _metric),
}


def _parse(reference: str) -> tuple[str, int] | None:
    """("table", id) of a reference, or None for one this reader does not know."""
    name, _, number = reference.partition(":")
    if name not in DESCRIBERS or not number.isdigit():
        return None
    return name, int(number)


def describe_all(connection: Connection, references: Iterable[list[str]]) -> list[str]:
    """The evidence text of each finding's references, one query per table for all of them."""
    wanted: list[list[str]] = [list(refs) for refs in references]
    ids: defaultdict[str, set[int]] = defaultdict(set)
    for refs in wanted:
        for reference in refs[:MAX_REFERENCES]:
            parsed = _parse(reference)
            if parsed is not None:
                ids[parsed[0]].add(parsed[1])
    lines: dict[str, str] = {}
    for name, numbers in ids.items():
        table, describe = DESCRIBERS[name]
        ordered = sorted(numbers)
        for chunk in in_slices(ordered):
            stmt = select(table).where(table.c.id.in_(chunk))
            for row in connection.execute(stmt):
                lines[f"{name}:{row.id}"] = describe(row)
    texts = []
    for refs in wanted:
        shown = [lines.get(reference, f"{reference} (no longer stored)") for reference in refs]
        text = "\n".join(shown[:MAX_REFERENCES])
        if len(refs) > MAX_REFERENCES:
            text += f"\n… and {len(refs) - MAX_REFERENCES} more"
        texts.append(text)
    return texts
