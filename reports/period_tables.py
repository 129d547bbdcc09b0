"""The report as tables: findings and changes of a period, for CSV and JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any, TextIO

from sqlalchemy import Connection

from rolecall.inventory.changes import Changes, changes_between
from rolecall.inventory.exports import COLUMNS, iso
from rolecall.inventory.findings import FindingView
from rolecall.reports.queries import finding_counts
from rolecall.reports.tabular import write_rows

# The findings export's columns (the contract's), after how each finding changed in the period.
FINDING_COLUMNS = ("change", *COLUMNS["findings"])
CHANGE_COLUMNS = ("change", "address", "detail")
CHANGE_KINDS = (
    "new-asset",
    "gone-asset",
    "opened-port",
    "closed-port",
    "new-role",
    "lost-role",
    "new-finding",
    "resolved-finding",
)
"""The kinds of change `change_rows` gives, in its order."""


def _finding_row(change: str, found: FindingView) -> dict[str, Any]:
    """One finding as a row, with how it changed in the period."""
    return {
        "change": change,
        "rule": found.rule,
        "address": found.address,
        "severity": found.severity,
        "summary": found.summary,
        "evidence": list(found.evidence),
        "first_seen": iso(found.first_seen),
        "last_seen": iso(found.last_seen),
        "status": found.status,
    }


def finding_rows(changes: Changes) -> Iterator[dict[str, Any]]:
    """New, still open and resolved findings of the period, new first."""
    new = {(found.rule, found.address) for found in changes.new_findings}
    for found in changes.new_findings:
        yield _finding_row("new", found)
    for found in changes.open_findings:
        if (found.rule, found.address) not in new:
            yield _finding_row("open", found)
    for found in changes.resolved_findings:
        yield _finding_row("resolved", found)


def change_rows(changes: Changes) -> Iterator[dict[str, Any]]:
    """Every change of the period as (change, address, detail) rows."""
    for address in changes.new_assets:
        yield {"change": "new-asset", "address": address, "detail": ""}
    for address in changes.gone_assets:
        yield {"change": "gone-asset", "address": address, "detail": ""}
    for address, port, transport in changes.opened_ports:
        yield {"change": "opened-port", "address": address, "detail": f"{port}/{transport}"}
    for address, port, transport in changes.closed_ports:
        yield {"change": "closed-port", "address": address, "detail": f"{port}/{transport}"}
    for address, role in changes.new_roles:
        yield {"change": "new-role", "address": address, "detail": role}
    for address, role in changes.lost_roles:
        yield {"change": "lost-role", "address": address, "detail": role}
    for found in changes.new_findings:
        yield {"change": "new-finding", "address": found.address, "detail": found.rule}
    for found in changes.resolved_findings:
        yield {"change": "resolved-finding", "address": found.address, "detail": found.rule}


def write_csv(
    connection: Connection,
    since: datetime,
    until: datetime,
    findings_out: TextIO,
    changes_out: TextIO,
    bom: bool = False,
) -> tuple[int, int]:
    """Write the period's findings and changes as two CSV files; return their row counts."""
    changes = changes_between(connection, since, until)
    found = write_rows(finding_rows(changes), FINDING_COLUMNS, "csv", findings_out, bom)
    changed = write_rows(change_rows(changes), CHANGE_COLUMNS, "csv", changes_out, bom)
    return found, changed


def write_json(connection: Connection, since: datetime, until: datetime, out: TextIO) -> int:
    """Write the period's summary, findings and changes as one JSON document; return findings."""
    changes = changes_between(connection, since, until)
    findings = list(finding_rows(changes))
    document = {
        "period": {"since": iso(since), "until": iso(until)},
        "summary": {
            "open_findings_by_severity": finding_counts(connection),
            "new_findings": len(changes.new_findings),
            "resolved_findings": len(changes.resolved_findings),
            "new_assets": len(changes.new_assets),
            "new_roles": len(changes.new_roles),
            "lost_roles": len(changes.lost_roles),
        },
        "findings": findings,
        "changes": list(change_rows(changes)),
    }
    json.dump(document, out, ensure_ascii=False, indent=1)
    out.write("\n")
    return len(findings)
