"""A host's current roles, merged over sources, for the rules that judge a host's state."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from sqlalchemy import Connection, func, select

from rolecall.inventory.findings import merged_evidence
from rolecall.inventory.sql.in_lists import in_list, in_slices
from rolecall.inventory.tables import ROLE_TABLE, SMTP_TABLE
from rolecall.inventory.text_order import by_code_point

NAMED_CLIENTS: Final = 3


@dataclass(slots=True)
class HeldRole:
    """One role of a host over every source: its span and (still JSON) evidence."""

    first_seen: datetime
    last_seen: datetime
    raw_evidence: list[str] = field(default_factory=list)
    known_evidence: list[str] = field(default_factory=list)

    @property
    def evidence(self) -> list[str]:
        """The evidence references of every source, merged."""
        merged: list[str] = list(self.known_evidence)
        for raw in self.raw_evidence:
            merged = merged_evidence(merged, json.loads(raw))
        return merged


def roles_of(connection: Connection, addresses: Sequence[str]) -> dict[str, dict[str, HeldRole]]:
    """Address -> role -> what holds it, for the given addresses."""
    table = ROLE_TABLE
    found: dict[str, dict[str, HeldRole]] = defaultdict(dict)
    if not addresses:
        return {}
    rows = connection.execute(
        select(
            table.c.address,
            table.c.role,
            table.c.first_seen,
            table.c.last_seen,
            table.c.evidence,
        )
        .where(in_list(connection.dialect, table.c.address, addresses))
        # Sources in one order, so a role's merged evidence is the same on every backend.
        .order_by(by_code_point(table.c.source))
    )
    for address, role, first_seen, last_seen, evidence in rows:
        held = found[address].get(role)
        if held is None:
            found[address][role] = HeldRole(first_seen, last_seen, [evidence])
            continue
        held.first_seen = min(held.first_seen, first_seen)
        held.last_seen = max(held.last_seen, last_seen)
        held.raw_evidence.append(evidence)
    return dict(found)


def smtp_senders(connection: Connection, among: Collection[str] | None) -> set[str]:
    """The hosts with the smtp-client role, among these addresses (None: every host)."""
    table = ROLE_TABLE
    query = select(table.c.address).where(table.c.role == "smtp-client").distinct()
    if among is None:
        return set(connection.execute(query).scalars())
    if not among:
        return set()
    listed = in_list(connection.dialect, table.c.address, sorted(among))
    return set(connection.execute(query.where(listed)).scalars())


def first_smtp_client(connection: Connection) -> datetime | None:
    """When the store first saw any host send SMTP."""
    table = ROLE_TABLE
    first: datetime | None = connection.execute(
        select(func.min(table.c.first_seen)).where(table.c.role == "smtp-client")
    ).scalar()
    return first


def mail_servers_of(connection: Connection, clients: Sequence[str]) -> dict[str, set[str]]:
    """Client -> the servers it sent mail to, for the given clients."""
    table = SMTP_TABLE
    found: dict[str, set[str]] = defaultdict(set)
    for chunk in in_slices(clients):
        rows = connection.execute(
            select(table.c.client, table.c.server).where(table.c.client.in_(chunk)).distinct()
        )
        for client, server in rows:
            found[client].add(server)
    return found


def relayed_clients(connection: Connection, proxies: Sequence[str]) -> dict[str, list[str]]:
    """Proxy -> the clients (sorted) whose tunnelled mail its own connections carried."""
    table = SMTP_TABLE
    found: dict[str, set[str]] = defaultdict(set)
    for chunk in in_slices(proxies):
        rows = connection.execute(
            select(table.c.client, table.c.relayed_for)
            .where(table.c.client.in_(chunk), table.c.relayed_for != "")
            .distinct()
        )
        for proxy, client in rows:
            found[proxy].add(client)
    return {proxy: sorted(clients) for proxy, clients in found.items()}


def relaying_note(clients: Sequence[str]) -> str:
    """The note " (it relays mail for A, B and N more)" on a proxy's clients; "" for none."""
    if not clients:
        return ""
    named = ", ".join(clients[:NAMED_CLIENTS])
    more = len(clients) - NAMED_CLIENTS
    return f" (it relays mail for {named}{f' and {more} more' if more > 0 else ''})"
