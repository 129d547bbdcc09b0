"""What changed between two points in time: hosts, ports, roles and findings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, func, select

from rolecall.inventory.findings import FindingView, view
from rolecall.inventory.tables import ASSET_TABLE, FINDING_TABLE, ROLE_TABLE, SERVICE_TABLE
from rolecall.inventory.text_order import by_code_point

# A port as (address, port, transport).
Port = tuple[str, int, str]


@dataclass(frozen=True)
class Changes:
    """Assets new and gone, ports opened and closed, roles gained and lost, and findings."""

    new_assets: list[str]
    gone_assets: list[str]
    opened_ports: list[Port]
    closed_ports: list[Port]
    new_roles: list[tuple[str, str]]
    lost_roles: list[tuple[str, str]]
    new_findings: list[FindingView]
    resolved_findings: list[FindingView]
    open_findings: list[FindingView]


def _role_spans() -> tuple[Select[Any], Any, Any]:
    """(address, role) over every source as a query to filter, and its first/last seen."""
    role = ROLE_TABLE
    first, last = func.min(role.c.first_seen), func.max(role.c.last_seen)
    return (
        (
            select(role.c.address, role.c.role)
            .group_by(role.c.address, role.c.role)
            .order_by(by_code_point(role.c.address), by_code_point(role.c.role))
        ),
        first,
        last,
    )


def _port_spans() -> tuple[Select[Any], Any, Any]:
    """(address, port, transport) over every source as a query to filter; its first/last seen."""
    service = SERVICE_TABLE
    first, last = func.min(service.c.first_seen), func.max(service.c.last_seen)
    key = (service.c.address, service.c.port, service.c.transport)
    return select(*key).group_by(*key).order_by(*map(by_code_point, key)), first, last


def _ports(connection: Connection, query: Select[Any]) -> list[Port]:
    """The ports a span query selects."""
    return [(row.address, row.port, row.transport) for row in connection.execute(query)]


def _findings(connection: Connection, *where: Any) -> list[FindingView]:
    """Findings matching the conditions, by rule and address."""
    finding = FINDING_TABLE
    stmt = (
        select(finding)
        .where(*where)
        .order_by(by_code_point(finding.c.rule), by_code_point(finding.c.address))
    )
    return [view(row) for row in connection.execute(stmt)]


def changes_between(connection: Connection, since: datetime, until: datetime) -> Changes:
    """What the evidence shows changed in [since, until).

    New (host, port, role): first seen in the window. Gone host: last seen in the
    period of the window's length just before `since`, not since. Closed port and
    lost role: last seen before `since` on a host whose evidence continues in the
    window. Resolved finding: resolved, its last evidence in the window. Open: open
    or acknowledged and first seen before `until`.
    The database does the filtering: only what changed is read.
    """
    asset, finding = ASSET_TABLE, FINDING_TABLE
    new_assets = list(
        connection.execute(
            select(asset.c.address)
            .where(asset.c.first_seen >= since, asset.c.first_seen < until)
            .order_by(by_code_point(asset.c.address))
        ).scalars()
    )
    spans, first, last = _role_spans()
    new_roles = [
        (row.address, row.role)
        for row in connection.execute(spans.having(first >= since, first < until))
    ]
    active = select(asset.c.address).where(asset.c.last_seen >= since, asset.c.first_seen < until)
    role = ROLE_TABLE
    lost_roles = [
        (row.address, row.role)
        for row in connection.execute(spans.where(role.c.address.in_(active)).having(last < since))
    ]
    gone_assets = list(
        connection.execute(
            select(asset.c.address)
            .where(asset.c.last_seen >= since - (until - since), asset.c.last_seen < since)
            .order_by(by_code_point(asset.c.address))
        ).scalars()
    )
    ports, port_first, port_last = _port_spans()
    service = SERVICE_TABLE
    return Changes(
        new_assets=new_assets,
        gone_assets=gone_assets,
        opened_ports=_ports(connection, ports.having(port_first >= since, port_first < until)),
        closed_ports=_ports(
            connection, ports.where(service.c.address.in_(active)).having(port_last < since)
        ),
        new_roles=new_roles,
        lost_roles=lost_roles,
        new_findings=_findings(
            connection, finding.c.first_seen >= since, finding.c.first_seen < until
        ),
        resolved_findings=_findings(
            connection,
            finding.c.status == "resolved",
            finding.c.last_seen >= since,
            finding.c.last_seen < until,
        ),
        open_findings=_findings(
            connection,
            finding.c.status.in_(("open", "acknowledged")),
            finding.c.first_seen < until,
        ),
    )
