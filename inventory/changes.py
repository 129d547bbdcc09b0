"""What changed between two points in time: assets, roles and findings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, func, select

from inventory.findings import FindingView, view
from inventory.tables import Asset, FindingRow, RoleRow


@dataclass(frozen=True)
class Changes:
    """New assets, roles gained and lost, and findings new, resolved and still open."""

    new_assets: list[str]
    new_roles: list[tuple[str, str]]
    lost_roles: list[tuple[str, str]]
    new_findings: list[FindingView]
    resolved_findings: list[FindingView]
    open_findings: list[FindingView]


def _table(model: Any) -> Table:
    """The Core table of a SQLModel class."""
    table: Table = model.__table__
    return table


def _roles(connection: Connection) -> list[Any]:
    """(address, role, first_seen, last_seen) over every source."""
    role = _table(RoleRow)
    return list(
        connection.execute(
            select(
                role.c.address,
                role.c.role,
                func.min(role.c.first_seen).label("first_seen"),
                func.max(role.c.last_seen).label("last_seen"),
            ).group_by(role.c.address, role.c.role)
        )
    )


def changes_between(connection: Connection, since: datetime, until: datetime) -> Changes:
    """What the evidence shows changed in [since, until).

    New: first seen in the window. Lost role: last seen before `since` on a host
    whose evidence continues in the window. Resolved finding: resolved, its last
    evidence in the window. Open: open or acknowledged and first seen before `until`.
    """
    asset, finding = _table(Asset), _table(FindingRow)
    new_assets = sorted(
        connection.execute(
            select(asset.c.address).where(asset.c.first_seen >= since, asset.c.first_seen < until)
        ).scalars()
    )
    active = set(
        connection.execute(
            select(asset.c.address).where(asset.c.last_seen >= since, asset.c.first_seen < until)
        ).scalars()
    )
    roles = _roles(connection)
    new_roles = sorted((row.address, row.role) for row in roles if since <= row.first_seen < until)
    lost_roles = sorted(
        (row.address, row.role) for row in roles if row.last_seen < since and row.address in active
    )
    findings = [view(row) for row in connection.execute(select(finding))]
    order = sorted(findings, key=lambda f: (f.rule, f.address))
    return Changes(
        new_assets=new_assets,
        new_roles=new_roles,
        lost_roles=lost_roles,
        new_findings=[f for f in order if since <= f.first_seen < until],
        resolved_findings=[
            f for f in order if f.status == "resolved" and since <= f.last_seen < until
        ],
        open_findings=[
            f for f in order if f.status in ("open", "acknowledged") and f.first_seen < until
        ],
    )
