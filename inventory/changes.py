"""What changed between two points in time: hosts, ports, roles and findings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Row, Select, func, select

from rolecall.inventory.findings import FindingView, view
from rolecall.inventory.tables import ASSET_TABLE, FINDING_TABLE, ROLE_TABLE, SERVICE_TABLE
from rolecall.inventory.text_order import by_code_point

# A port as (address, port, transport).
Port = tuple[str, int, str]
T = TypeVar("T")


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


@dataclass(frozen=True)
class Head(Generic[T]):
    """The first items of a changes list and how many items the whole list holds."""

    items: list[T]
    total: int


@dataclass(frozen=True)
class Listing(Generic[T]):
    """One changes list: the query selecting it in its order, and the item a row makes."""

    query: Select[Any]
    item: Callable[[Row[Any]], T]

    def all(self, connection: Connection) -> list[T]:
        """Every item of the list, in order."""
        return [self.item(row) for row in connection.execute(self.query)]

    def count(self, connection: Connection) -> int:
        """How many items the list holds, counted by the database."""
        counted = select(func.count()).select_from(self.query.order_by(None).subquery())
        return int(connection.execute(counted).scalar_one())

    def head(self, connection: Connection, limit: int) -> Head[T]:
        """The first `limit` items, and the whole list's length counted by the database."""
        rows = list(connection.execute(self.query.limit(limit)))
        # A list shorter than the limit is all there: no need to count it again.
        total = len(rows) if len(rows) < limit else self.count(connection)
        return Head([self.item(row) for row in rows], total)


@dataclass(frozen=True)
class ChangeListings:
    """The lists of Changes as listings, the one definition of what each list holds."""

    new_assets: Listing[str]
    gone_assets: Listing[str]
    opened_ports: Listing[Port]
    closed_ports: Listing[Port]
    new_roles: Listing[tuple[str, str]]
    lost_roles: Listing[tuple[str, str]]
    new_findings: Listing[FindingView]
    resolved_findings: Listing[FindingView]
    open_findings: Listing[FindingView]


def _address(row: Row[Any]) -> str:
    """An asset row's address."""
    return str(row.address)


def _role(row: Row[Any]) -> tuple[str, str]:
    """A role row as (address, role)."""
    return (row.address, row.role)


def _port(row: Row[Any]) -> Port:
    """A port row as (address, port, transport)."""
    return (row.address, row.port, row.transport)


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


def _assets(*where: Any) -> Listing[str]:
    """Addresses of the assets matching the conditions, in address order."""
    asset = ASSET_TABLE
    query = select(asset.c.address).where(*where).order_by(by_code_point(asset.c.address))
    return Listing(query, _address)


def _findings(*where: Any) -> Listing[FindingView]:
    """Findings matching the conditions, by rule and address."""
    finding = FINDING_TABLE
    query = (
        select(finding)
        .where(*where)
        .order_by(by_code_point(finding.c.rule), by_code_point(finding.c.address))
    )
    return Listing(query, view)


def change_listings(since: datetime, until: datetime) -> ChangeListings:
    """What the evidence shows changed in [since, until), as one listing per list.

    New (host, port, role): first seen in the window. Gone host: last seen in the
    period of the window's length just before `since`, not since. Closed port and
    lost role: last seen before `since` on a host whose evidence continues in the
    window. Resolved finding: resolved, its last evidence in the window. Open: open
    or acknowledged and first seen before `until`.
    The database does the filtering: only what changed is read.
    """
    asset, finding, role, service = ASSET_TABLE, FINDING_TABLE, ROLE_TABLE, SERVICE_TABLE
    active = select(asset.c.address).where(asset.c.last_seen >= since, asset.c.first_seen < until)
    roles, role_first, role_last = _role_spans()
    ports, port_first, port_last = _port_spans()
    return ChangeListings(
        new_assets=_assets(asset.c.first_seen >= since, asset.c.first_seen < until),
        gone_assets=_assets(
            asset.c.last_seen >= since - (until - since), asset.c.last_seen < since
        ),
        opened_ports=Listing(ports.having(port_first >= since, port_first < until), _port),
        closed_ports=Listing(
            ports.where(service.c.address.in_(active)).having(port_last < since), _port
        ),
        new_roles=Listing(roles.having(role_first >= since, role_first < until), _role),
        lost_roles=Listing(
            roles.where(role.c.address.in_(active)).having(role_last < since), _role
        ),
        new_findings=_findings(finding.c.first_seen >= since, finding.c.first_seen < until),
        resolved_findings=_findings(
            finding.c.status == "resolved",
            finding.c.last_seen >= since,
            finding.c.last_seen < until,
        ),
        open_findings=_findings(
            finding.c.status.in_(("open", "acknowledged")), finding.c.first_seen < until
        ),
    )


def changes_between(connection: Connection, since: datetime, until: datetime) -> Changes:
    """Every item of every list of what changed in [since, until) (see change_listings)."""
    listings = change_listings(since, until)
    return Changes(
        new_assets=listings.new_assets.all(connection),
        gone_assets=listings.gone_assets.all(connection),
        opened_ports=listings.opened_ports.all(connection),
        closed_ports=listings.closed_ports.all(connection),
        new_roles=listings.new_roles.all(connection),
        lost_roles=listings.lost_roles.all(connection),
        new_findings=listings.new_findings.all(connection),
        resolved_findings=listings.resolved_findings.all(connection),
        open_findings=listings.open_findings.all(connection),
    )
