"""One host as the console shows it: what the inventory holds about one address, each list bounded.

Every query selects by the address through an index whose first column is the
address (or client, proxy), so a host with many flows or messages reads only its
own rows. Each list is at most ``limit`` rows long and says how many there are.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Connection, Select, String, cast, func, select

from rolecall.inventory.finding_pages import TriageFinding, triage_finding
from rolecall.inventory.tables import (
    ALERT_EVENT_TABLE,
    ASSET_TABLE,
    CONNECT_TABLE,
    FINDING_TABLE,
    FLOW_TABLE,
    HOSTNAME_TABLE,
    OBSERVATION_TABLE,
    ROLE_TABLE,
    SERVICE_TABLE,
    SMTP_TABLE,
    SOCKS_TABLE,
)
from rolecall.inventory.text_order import by_code_point

T = TypeVar("T")


@dataclass(frozen=True)
class Bounded(Generic[T]):
    """The first rows of a list, how many there are in all and how many are not shown."""

    rows: list[T]
    total: int
    more: int


def bounded(rows: Sequence[T], total: int) -> Bounded[T]:
    """A list cut to its rows, knowing its whole length."""
    return Bounded(list(rows), total, max(total - len(rows), 0))


@dataclass(frozen=True)
class Counted:
    """A value and how many rows hold it."""

    value: str
    count: int


@dataclass(frozen=True)
class NameSeen:
    """A name the host was seen under."""

    name: str
    source: str
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True)
class RoleSeen:
    """A role the host plays; evidence is its "table:id" references."""

    role: str
    source: str
    evidence: list[str]
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True)
class ServiceSeen:
    """A service on the host as one source saw it."""

    port: int
    transport: str
    protocol: str
    product: str
    version: str
    auth: str
    banner: str
    source: str
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True)
class CertificateSeen:
    """A TLS certificate a service of the host presented."""

    port: int
    transport: str
    subject: str
    issuer: str
    not_before: str
    not_after: str
    self_signed: str
    last_seen: datetime


@dataclass(frozen=True)
class MailSent:
    """The mail the host sent: its messages, its proxy copies and the programs it used."""

    messages: int
    relayed_copies: int
    first_seen: datetime | None
    last_seen: datetime | None
    software: Bounded[Counted]


@dataclass(frozen=True)
class ProxyTraffic:
    """SOCKS or HTTP CONNECT requests through or by the host: peers and targets, counted."""

    kind: str
    requests: int
    peers: Bounded[Counted]
    targets: Bounded[Counted]


@dataclass(frozen=True)
class FindingEvent:
    """A change of one of the host's findings, newest first."""

    sequence: int
    action: str
    at: datetime
    rule: str
    severity: str
    note: str


def _count(connection: Connection, stmt: Select[Any]) -> int:
    """How many rows a statement selects."""
    return int(connection.execute(select(func.count()).select_from(stmt.subquery())).scalar_one())


def listed(
    connection: Connection, stmt: Select[Any], limit: int, make: Callable[[Any], T]
) -> Bounded[T]:
    """The first limit rows of a statement (made into T) and how many it selects."""
    rows = [make(row) for row in connection.execute(stmt.limit(limit))]
    total = len(rows) if len(rows) < limit else _count(connection, stmt)
    return bounded(rows, total)


def seen_span(connection: Connection, address: str) -> tuple[datetime, datetime] | None:
    """When the address was first and last seen, or None if the inventory does not know it."""
    asset = ASSET_TABLE
    row = connection.execute(
        select(asset.c.first_seen, asset.c.last_seen).where(asset.c.address == address)
    ).first()
    return None if row is None else (row.first_seen, row.last_seen)


def names(connection: Connection, address: str, limit: int) -> Bounded[NameSeen]:
    """The names the host was seen under, by name."""
    table = HOSTNAME_TABLE
    stmt = (
        select(table)
        .where(table.c.address == address)
        .order_by(by_code_point(table.c.name), by_code_point(table.c.source))
    )
    return listed(
        connection,
        stmt,
        limit,
        lambda row: NameSeen(row.name, row.source, row.first_seen, row.last_seen),
    )


def roles(connection: Connection, address: str, limit: int) -> Bounded[RoleSeen]:
    """The roles the host plays, by role, with their evidence references."""
    table = ROLE_TABLE
    stmt = (
        select(table)
        .where(table.c.address == address)
        .order_by(by_code_point(table.c.role), by_code_point(table.c.source))
    )
    return listed(
        connection,
        stmt,
        limit,
        lambda row: RoleSeen(
            row.role, row.source, _references(row.evidence), row.first_seen, row.last_seen
        ),
    )


def _references(text: str) -> list[str]:
    """The "table:id" references of a JSON evidence column (none if it is not a list)."""
    try:
        found = json.loads(text)
    except ValueError:
        return []
    return [str(item) for item in found] if isinstance(found, list) else []


def services(connection: Connection, address: str, limit: int) -> Bounded[ServiceSeen]:
    """The host's services by port, transport and source, as the services export has them."""
    table = SERVICE_TABLE
    stmt = (
        select(table)
        .where(table.c.address == address)
        .order_by(table.c.port, by_code_point(table.c.transport), by_code_point(table.c.source))
    )
    return listed(
        connection,
        stmt,
        limit,
        lambda row: ServiceSeen(
            row.port,
            row.transport,
            row.protocol,
            row.product,
            row.version,
            row.auth,
            row.banner,
            row.source,
            row.first_seen,
            row.last_seen,
        ),
    )


def _certificate(row: Any) -> CertificateSeen:
    """A tls-certificate observation as the certificate it describes."""
    try:
        detail = json.loads(row.detail)
    except ValueError:
        detail = {}
    if not isinstance(detail, dict):
        detail = {}
    return CertificateSeen(
        row.port,
        row.transport,
        row.value,
        str(detail.get("issuer", "")),
        str(detail.get("not_before", "")),
        str(detail.get("not_after", "")),
        str(detail.get("self_signed", "")),
        row.last_seen,
    )


def certificates(connection: Connection, address: str, limit: int) -> Bounded[CertificateSeen]:
    """The TLS certificates the host's services presented, by port."""
    table = OBSERVATION_TABLE
    stmt = (
        select(table)
        .where(table.c.address == address, table.c.kind == "tls-certificate")
        .order_by(table.c.port, by_code_point(table.c.transport), table.c.last_seen.desc())
    )
    return listed(connection, stmt, limit, _certificate)


def _grouped(
    connection: Connection,
    value: ColumnElement[Any],
    where: Sequence[ColumnElement[bool]],
    limit: int,
) -> Bounded[Counted]:
    """The values of an expression among the rows matching where, most common first."""
    stmt = (
        select(value.label("value"), func.count().label("n"))
        .where(*where)
        .group_by(value)
        .order_by(func.count().desc(), by_code_point(value))
    )
    return listed(connection, stmt, limit, lambda row: Counted(str(row.value), int(row.n)))


def mail_sent(connection: Connection, address: str, limit: int) -> MailSent:
    """The mail transactions the host was the client of and the mail programs it named.

    A proxy's own copies of messages it relays for its clients (``relayed_for``) are
    counted apart: each is its client's message.
    """
    smtp = SMTP_TABLE
    relayed = (smtp.c.relayed_for != "").label("relayed")
    # One pass over the host's rows (by the client index) gives every figure.
    stmt = (
        select(
            relayed,
            smtp.c.user_agent,
            func.count().label("n"),
            func.min(smtp.c.ts).label("first"),
            func.max(smtp.c.ts).label("last"),
        )
        .where(smtp.c.client == address)
        .group_by(relayed, smtp.c.user_agent)
    )
    messages = copies = 0
    agents: list[Counted] = []
    first: datetime | None = None
    last: datetime | None = None
    for row in connection.execute(stmt):
        if row.relayed:
            copies += int(row.n)
            continue
        messages += int(row.n)
        first = row.first if first is None else min(first, row.first)
        last = row.last if last is None else max(last, row.last)
        if row.user_agent:
            agents.append(Counted(row.user_agent, int(row.n)))
    agents.sort(key=lambda agent: (-agent.count, agent.value))
    return MailSent(messages, copies, first, last, bounded(agents[:limit], len(agents)))


def _target(host: ColumnElement[Any], port: ColumnElement[Any]) -> ColumnElement[Any]:
    """The "host:port" text of a request's target."""
    return host + ":" + cast(port, String)


def proxy_traffic(
    connection: Connection, address: str, limit: int, offered: bool
) -> list[ProxyTraffic]:
    """SOCKS and HTTP CONNECT requests the host answered as a proxy (offered) or made (used).

    Peers are the clients of a proxy the host offers, or the proxies ("address:port")
    the host used; targets are what the requests asked for.
    """
    found = []
    for kind, table in (("socks", SOCKS_TABLE), ("connect", CONNECT_TABLE)):
        mine = table.c.proxy if offered else table.c.client
        where = (mine == address,)
        requests = int(connection.execute(select(func.count()).where(*where)).scalar_one())
        if not requests:
            continue
        peer = table.c.client if offered else _target(table.c.proxy, table.c.proxy_port)
        host: ColumnElement[Any] = table.c.request_host
        if kind == "socks":
            host = func.coalesce(func.nullif(table.c.request_name, ""), table.c.request_host)
        found.append(
            ProxyTraffic(
                kind,
                requests,
                _grouped(connection, peer, where, limit),
                _grouped(connection, _target(host, table.c.request_port), where, limit),
            )
        )
    return found


def connections_per_day(
    connection: Connection, address: str, days: int, today: date
) -> tuple[date, list[tuple[date, int]]]:
    """Connections the host opened per day (flow table), over the days ending at its last flow.

    The days end today, or on the host's last day of flows when that is earlier, so a
    host gone quiet still shows its traffic; every day is present, zero if none.
    """
    flow = FLOW_TABLE
    last = connection.execute(
        select(func.max(flow.c.day)).where(flow.c.client == address)
    ).scalar_one()
    end = min(today, last) if isinstance(last, date) else today
    start = end - timedelta(days=days - 1)
    stmt = (
        select(flow.c.day, func.sum(flow.c.connections))
        .where(flow.c.client == address, flow.c.day >= start, flow.c.day <= end)
        .group_by(flow.c.day)
    )
    counted = {day: int(total) for day, total in connection.execute(stmt)}
    series = [(start + timedelta(days=index), 0) for index in range(days)]
    return end, [(day, counted.get(day, 0)) for day, _ in series]


def findings(connection: Connection, address: str, limit: int) -> Bounded[TriageFinding]:
    """The host's findings of every status, the open ones and the latest first."""
    table = FINDING_TABLE
    stmt = (
        select(table)
        .where(table.c.address == address)
        .order_by(
            (table.c.status != "open").asc(), table.c.last_seen.desc(), by_code_point(table.c.rule)
        )
    )
    return listed(
        connection,
        stmt,
        limit,
        triage_finding,
    )


def finding_events(connection: Connection, address: str, limit: int) -> Bounded[FindingEvent]:
    """The changes of the host's findings (alert events), newest first."""
    table = ALERT_EVENT_TABLE
    stmt = select(table).where(table.c.address == address).order_by(table.c.sequence.desc())
    return listed(
        connection,
        stmt,
        limit,
        lambda row: FindingEvent(
            row.sequence, row.action, row.at, row.rule, row.severity, row.note
        ),
    )
