"""Findings a page at a time: filtered, counted and sorted in SQL, never all loaded."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import ColumnElement, Connection, Select, case, func, or_, select

from rolecall.inventory.findings import SEVERITIES
from rolecall.inventory.tables import ASSET_GROUP_TABLE, FINDING_TABLE
from rolecall.inventory.text_order import by_code_point

SORTS: Final = ("last_seen", "first_seen", "severity", "rule", "address")
"""What a page of findings can be sorted by."""
DESCENDING_FIRST: Final = frozenset({"last_seen", "first_seen", "severity"})
"""Sorts whose natural order is descending: newest first, most severe first."""


@dataclass(frozen=True)
class FindingQuery:
    """Which findings to list and in what order; None and "" filter nothing."""

    status: str | None = "open"
    rule: str | None = None
    severity: str | None = None
    group: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str = ""
    sort: str = "last_seen"
    descending: bool = True


@dataclass(frozen=True)
class TriageFinding:
    """A finding as triage reads it: the listing's fields with its id, note and when acked."""

    id: int
    rule: str
    address: str
    severity: str
    summary: str
    evidence: list[str]
    first_seen: datetime
    last_seen: datetime
    status: str
    note: str
    acknowledged: datetime | None


@dataclass(frozen=True)
class FindingPage:
    """One page of the findings a query selects, and how many it selects in all."""

    total: int
    rows: list[TriageFinding]


def _conditions(query: FindingQuery) -> list[ColumnElement[bool]]:
    """The WHERE conditions of a query (last_seen in [since, until))."""
    table, groups = FINDING_TABLE, ASSET_GROUP_TABLE
    where: list[ColumnElement[bool]] = []
    if query.status is not None:
        where.append(table.c.status == query.status)
    if query.rule is not None:
        where.append(table.c.rule == query.rule)
    if query.severity is not None:
        where.append(table.c.severity == query.severity)
    if query.group is not None:
        members = select(groups.c.address).where(groups.c.name == query.group)
        where.append(table.c.address.in_(members))
    if query.since is not None:
        where.append(table.c.last_seen >= query.since)
    if query.until is not None:
        where.append(table.c.last_seen < query.until)
    if query.text:
        where.append(
            or_(
                *(
                    column.icontains(query.text, autoescape=True)
                    for column in (table.c.address, table.c.summary, table.c.rule)
                )
            )
        )
    return where


def _ordered(stmt: Select[Any], query: FindingQuery) -> Select[Any]:
    """The statement sorted as the query asks, then by rule and address (unique: stable pages)."""
    table = FINDING_TABLE
    if query.sort not in SORTS:
        raise ValueError(f"unknown sort {query.sort!r}")
    # Severity sorts by weight: "descending" is most severe first.
    weights = {name: len(SEVERITIES) - rank for rank, name in enumerate(SEVERITIES)}
    key: Any = (
        case(weights, value=table.c.severity, else_=0)
        if query.sort == "severity"
        else by_code_point(table.c[query.sort])
    )
    first = key.desc() if query.descending else key.asc()
    return stmt.order_by(first, by_code_point(table.c.rule), by_code_point(table.c.address))


def finding_page(
    connection: Connection, query: FindingQuery, offset: int, limit: int
) -> FindingPage:
    """The findings a query selects from `offset`, at most `limit`, and their total count."""
    table = FINDING_TABLE
    where = _conditions(query)
    total = connection.execute(select(func.count()).select_from(table).where(*where)).scalar_one()
    stmt = _ordered(select(table).where(*where), query).offset(offset).limit(limit)
    rows = [triage_finding(row) for row in connection.execute(stmt)]
    return FindingPage(int(total), rows)


def triage_finding(row: Any) -> TriageFinding:
    """A finding row as triage reads it."""
    return TriageFinding(
        row.id,
        row.rule,
        row.address,
        row.severity,
        row.summary,
        json.loads(row.evidence),
        row.first_seen,
        row.last_seen,
        row.status,
        row.note,
        row.acknowledged,
    )
