"""Role derivation: the stored evidence, run through the rule set, becomes the role table.

Deriving is a pure function of the evidence: it rebuilds the role table in one
transaction, so deriving twice gives the same result.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, delete, select

from inventory.roles import roles_from_observation
from inventory.tables import FlowRow, ObservationRow, RoleRow, SmtpRow, SocksRow
from probes.records import Observation

MAX_EVIDENCE = 20
# Passive server roles from answered flows, by server port (the capture saw a reply).
FLOW_SERVER_ROLES: dict[tuple[str, int], tuple[str, str]] = {
    ("tcp", 80): ("web-server", "web-client"),
    ("tcp", 8080): ("web-server", "web-client"),
    ("tcp", 443): ("https-server", "web-client"),
    ("udp", 53): ("dns-server", "dns-client"),
    ("tcp", 53): ("dns-server", "dns-client"),
    ("tcp", 22): ("ssh-server", ""),
}


def _table(model: Any) -> Table:
    """The Core table of a SQLModel class."""
    table: Table = model.__table__
    return table


@dataclass
class _Role:
    """A role being derived: its evidence and when it was seen."""

    first_seen: datetime
    last_seen: datetime
    evidence: list[str] = field(default_factory=list)


class _Roles:
    """Roles by (address, role, source), merged as evidence arrives."""

    def __init__(self) -> None:
        self.found: dict[tuple[str, str, str], _Role] = {}

    def add(self, key: tuple[str, str, str], first: datetime, last: datetime, proof: str) -> None:
        """Add one piece of evidence for a role."""
        role = self.found.get(key)
        if role is None:
            self.found[key] = _Role(first, last, [proof])
            return
        role.first_seen = min(role.first_seen, first)
        role.last_seen = max(role.last_seen, last)
        if len(role.evidence) < MAX_EVIDENCE:
            role.evidence.append(proof)


def _from_observations(connection: Connection, roles: _Roles) -> None:
    """Roles supported by single observations (the active probes' rule table)."""
    table = _table(ObservationRow)
    for row in connection.execute(select(table)).mappings():
        obs = Observation(
            row["address"],
            row["kind"],
            row["source"],
            row["last_seen"],
            row["port"],
            row["transport"],
            row["value"],
        )
        for role in roles_from_observation(obs):
            key = (row["address"], role, row["source"])
            roles.add(key, row["first_seen"], row["last_seen"], f"observation:{row['id']}")


def _from_traffic(connection: Connection, roles: _Roles) -> None:
    """Roles shown by traffic: mail transactions, SOCKS requests and answered flows."""
    smtp = _table(SmtpRow)
    for row in connection.execute(
        select(smtp.c.id, smtp.c.client, smtp.c.server, smtp.c.ts, smtp.c.source)
    ):
        proof = f"smtp:{row.id}"
        roles.add((row.client, "smtp-client", row.source), row.ts, row.ts, proof)
        roles.add((row.server, "smtp-server", row.source), row.ts, row.ts, proof)
    socks = _table(SocksRow)
    for row in connection.execute(
        select(socks.c.id, socks.c.client, socks.c.proxy, socks.c.ts, socks.c.source)
    ):
        proof = f"socks:{row.id}"
        roles.add((row.client, "socks-client", row.source), row.ts, row.ts, proof)
        roles.add((row.proxy, "socks-proxy", row.source), row.ts, row.ts, proof)
    flow = _table(FlowRow)
    answered = select(flow).where(flow.c.answered.is_(True))
    for found in connection.execute(answered).mappings():
        server_role, client_role = FLOW_SERVER_ROLES.get(
            (found["transport"], found["server_port"]), ("", "")
        )
        span = (found["first_seen"], found["last_seen"], f"flow:{found['id']}")
        if server_role:
            roles.add((found["server"], server_role, found["source"]), *span)
        if client_role:
            roles.add((found["client"], client_role, found["source"]), *span)


def _rows(roles: _Roles) -> Iterator[dict[str, Any]]:
    """Role-table rows of the derived roles."""
    for (address, role, source), found in roles.found.items():
        yield {
            "address": address,
            "role": role,
            "source": source,
            "evidence": json.dumps(found.evidence),
            "first_seen": found.first_seen,
            "last_seen": found.last_seen,
        }


def derive_roles(connection: Connection) -> int:
    """Rebuild the role table from all stored evidence; return how many roles hold."""
    roles = _Roles()
    _from_observations(connection, roles)
    _from_traffic(connection, roles)
    table = _table(RoleRow)
    connection.execute(delete(table))
    rows = list(_rows(roles))
    if rows:
        connection.execute(table.insert(), rows)
    return len(rows)
