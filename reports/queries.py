"""What the report reads from the inventory tables: findings, hosts, servers, mail software."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, case, func, select

from rolecall.inventory.exports import inventory_rows, iso
from rolecall.inventory.findings import FindingView, view
from rolecall.inventory.groups import groups_of_addresses
from rolecall.inventory.sql.in_lists import in_slices
from rolecall.inventory.tables import (
    ASSET_GROUP_TABLE,
    ASSET_TABLE,
    FINDING_TABLE,
    HOSTNAME_TABLE,
    ROLE_TABLE,
    SERVICE_TABLE,
    SMTP_TABLE,
)
from rolecall.inventory.text_order import by_code_point
from rolecall.reports.evidence import describe_all

SEVERITIES = ("high", "medium", "low", "info")
SERVER_ROLES = {
    "socks-proxy": (("socks-proxy-open", "open"), ("socks-proxy-auth", "password required")),
    "smtp-server": (("smtp-open-relay", "open relay"), ("smtp-auth-required", "AUTH required")),
}


@dataclass(frozen=True)
class FindingItem:
    """A finding as the report shows it; evidence is pretty-printed text."""

    rule: str
    address: str
    severity: str
    summary: str
    evidence: str
    first_seen: str
    last_seen: str
    status: str


@dataclass(frozen=True)
class HostDetail:
    """One host's drill-down: names, roles, groups, services and findings."""

    address: str
    hostnames: list[str]
    roles: list[str]
    groups: list[str]
    services: list[str]
    findings: list[FindingItem] = field(default_factory=list)


@dataclass(frozen=True)
class SoftwareSeen:
    """A mail client program (X-Mailer/User-Agent) and the hosts that sent with it."""

    user_agent: str
    messages: int
    clients: list[tuple[str, list[str]]]


@dataclass(frozen=True)
class ServerSeen:
    """A SOCKS proxy or SMTP server and how open it is."""

    kind: str
    address: str
    openness: str
    ports: list[str]
    products: list[str]


def finding_items(connection: Connection, views: Sequence[FindingView]) -> list[FindingItem]:
    """Findings as the report shows them, their evidence references read back as text."""
    texts = describe_all(connection, (found.evidence for found in views))
    return [
        FindingItem(
            found.rule,
            found.address,
            found.severity,
            found.summary,
            text,
            iso(found.first_seen),
            iso(found.last_seen),
            found.status,
        )
        for found, text in zip(views, texts, strict=True)
    ]


def count_assets(connection: Connection) -> int:
    """How many assets the inventory holds."""
    return int(connection.execute(select(func.count()).select_from(ASSET_TABLE)).scalar_one())


def role_counts(connection: Connection) -> list[tuple[str, int]]:
    """How many hosts play each role, most common first."""
    role = ROLE_TABLE
    stmt = select(role.c.role, func.count(role.c.address.distinct())).group_by(role.c.role)
    rows = [(str(name), int(count)) for name, count in connection.execute(stmt)]
    return sorted(rows, key=lambda item: (-item[1], item[0]))


def group_counts(connection: Connection) -> list[tuple[str, int]]:
    """How many hosts each asset group holds, largest first."""
    member = ASSET_GROUP_TABLE
    stmt = select(member.c.name, func.count()).group_by(member.c.name)
    rows = [(str(name), int(count)) for name, count in connection.execute(stmt)]
    return sorted(rows, key=lambda item: (-item[1], item[0]))


def finding_counts(connection: Connection, status: str = "open") -> dict[str, int]:
    """Findings with a status by severity (every severity present, zero if none)."""
    finding = FINDING_TABLE
    stmt = (
        select(finding.c.severity, func.count())
        .where(finding.c.status == status)
        .group_by(finding.c.severity)
    )
    counts = dict.fromkeys(SEVERITIES, 0)
    for severity, count in connection.execute(stmt):
        counts[str(severity)] = counts.get(str(severity), 0) + int(count)
    return counts


def open_findings(connection: Connection, limit: int) -> list[FindingItem]:
    """The open findings, most severe and most recent first, at most limit."""
    finding = FINDING_TABLE
    rank = {name: index for index, name in enumerate(SEVERITIES)}
    stmt = select(finding).where(finding.c.status == "open")
    # Ranking in SQL keeps memory bounded however many findings there are.
    ordered = stmt.order_by(
        *[
            (finding.c.severity != name).asc()
            for name in sorted(SEVERITIES, key=lambda name: rank[name])
        ],
        finding.c.last_seen.desc(),
        by_code_point(finding.c.address),
        by_code_point(finding.c.rule),
    ).limit(limit)
    return finding_items(connection, [view(row) for row in connection.execute(ordered)])


def _by_address(
    connection: Connection, source: Table, column: str, addresses: Sequence[str]
) -> dict[str, list[str]]:
    """Distinct values of one column per address, for the given addresses."""
    found: defaultdict[str, set[str]] = defaultdict(set)
    for chunk in in_slices(addresses):
        stmt = select(source.c.address, source.c[column]).where(source.c.address.in_(chunk))
        for address, value in connection.execute(stmt):
            found[address].add(str(value))
    return {address: sorted(values) for address, values in found.items()}


def _most_told(texts: set[str]) -> list[str]:
    """The texts that no other one extends: "8080/tcp" goes when "8080/tcp http nginx" is there."""
    return sorted(
        text for text in texts if not any(other.startswith(f"{text} ") for other in texts)
    )


def _services(connection: Connection, addresses: Sequence[str]) -> dict[str, list[str]]:
    """Each address's services as "port/transport protocol product version", each port once."""
    service = SERVICE_TABLE
    found: defaultdict[str, set[str]] = defaultdict(set)
    for chunk in in_slices(addresses):
        stmt = select(service).where(service.c.address.in_(chunk))
        for row in connection.execute(stmt):
            text = " ".join(
                part for part in (row.protocol, row.product, row.version) if part
            ).strip()
            found[row.address].add(f"{row.port}/{row.transport} {text}".strip())
    return {address: _most_told(values) for address, values in found.items()}


def host_details(
    connection: Connection,
    findings: Iterable[FindingItem],
    groups: dict[str, list[str]],
) -> list[HostDetail]:
    """The drill-down of every host named by the findings, in address order."""
    by_host: defaultdict[str, list[FindingItem]] = defaultdict(list)
    for item in findings:
        by_host[item.address].append(item)
    addresses = sorted(by_host)
    names = _by_address(connection, HOSTNAME_TABLE, "name", addresses)
    roles = _by_address(connection, ROLE_TABLE, "role", addresses)
    services = _services(connection, addresses)
    return [
        HostDetail(
            address,
            names.get(address, []),
            roles.get(address, []),
            groups.get(address, []),
            services.get(address, []),
            by_host[address],
        )
        for address in addresses
    ]


def mail_software(
    connection: Connection, since: datetime, until: datetime, limit: int
) -> list[SoftwareSeen]:
    """Mail client programs seen sending in [since, until) and the hosts (with roles) using them.

    A proxy's copy of a message it relays for a client is that client's message, counted once.
    """
    smtp = SMTP_TABLE
    stmt = (
        select(smtp.c.user_agent, smtp.c.client, func.count())
        .where(
            smtp.c.user_agent != "",
            smtp.c.relayed_for == "",
            smtp.c.ts >= since,
            smtp.c.ts < until,
        )
        .group_by(smtp.c.user_agent, smtp.c.client)
    )
    messages: defaultdict[str, int] = defaultdict(int)
    clients: defaultdict[str, set[str]] = defaultdict(set)
    for agent, client, count in connection.execute(stmt):
        messages[agent] += int(count)
        clients[agent].add(client)
    shown = sorted(messages, key=lambda agent: (-messages[agent], agent))[:limit]
    listed = {agent: sorted(clients[agent])[:limit] for agent in shown}
    # Roles of the hosts listed only: an agent may have sent from every host of the network.
    everyone = sorted({client for hosts in listed.values() for client in hosts})
    roles = _by_address(connection, ROLE_TABLE, "role", everyone)
    return [
        SoftwareSeen(
            agent, messages[agent], [(client, roles.get(client, [])) for client in listed[agent]]
        )
        for agent in shown
    ]


def servers(connection: Connection, limit: int) -> list[ServerSeen]:
    """SOCKS proxies and SMTP servers with how open each is, the open ones first."""
    found: list[ServerSeen] = []
    for kind in sorted(SERVER_ROLES):
        found.extend(_servers_of(connection, kind, limit))
    found = found[:limit]
    ports = _server_ports(connection, [item.address for item in found])
    return [
        ServerSeen(
            item.kind,
            item.address,
            item.openness,
            ports.get((item.address, item.kind), ([], []))[0],
            ports.get((item.address, item.kind), ([], []))[1],
        )
        for item in found
    ]


def _servers_of(connection: Connection, kind: str, limit: int) -> list[ServerSeen]:
    """The first limit hosts playing a server role, the ones shown open first, then by address.

    The database ranks every host of the role and reads only the ones shown.
    """
    role, pairs = ROLE_TABLE, SERVER_ROLES[kind]
    names = [name for name, _ in pairs]

    def held(*wanted: str) -> Any:
        return func.max(case((role.c.role.in_(wanted), 1), else_=0))

    stmt = (
        select(role.c.address, *(held(name) for name in names))
        .where(role.c.role.in_([kind, *names]))
        .group_by(role.c.address)
        .having(held(kind) == 1)
        .order_by(held(*names).desc(), by_code_point(role.c.address))
        .limit(limit)
    )
    found = []
    for address, *flags in connection.execute(stmt):
        states = [text for (_, text), flag in zip(pairs, flags, strict=True) if flag]
        found.append(ServerSeen(kind, address, ", ".join(states) or "not shown open", [], []))
    return found


def _server_ports(
    connection: Connection, addresses: Sequence[str]
) -> dict[tuple[str, str], tuple[list[str], list[str]]]:
    """Ports and products of SOCKS and SMTP services on the given addresses."""
    service = SERVICE_TABLE
    found: defaultdict[tuple[str, str], tuple[set[str], set[str]]] = defaultdict(
        lambda: (set(), set())
    )
    for chunk in in_slices(addresses):
        stmt = select(service).where(service.c.address.in_(chunk))
        for row in connection.execute(stmt):
            kind = "smtp-server" if row.protocol == "smtp" else ""
            if row.protocol.startswith("socks"):
                kind = "socks-proxy"
            if kind:
                ports, products = found[(row.address, kind)]
                ports.add(f"{row.port}/{row.transport}")
                if row.product or row.banner:
                    products.add((row.product or row.banner)[:120])
    return {key: (sorted(ports), sorted(products)) for key, (ports, products) in found.items()}


def inventory_page(connection: Connection, limit: int) -> list[dict[str, Any]]:
    """The first limit inventory rows (address order), with groups filled in."""
    rows: list[dict[str, Any]] = []
    for row in inventory_rows(connection):
        rows.append(row)
        if len(rows) >= limit:
            break
    groups = groups_of_addresses(connection, [row["address"] for row in rows])
    for row in rows:
        row["groups"] = groups.get(row["address"], [])
    return rows
