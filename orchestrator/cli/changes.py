"""`rolecall changes`: what changed between two points in time, as ndiff shows for two scans."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

import typer

from rolecall.orchestrator.cli.report import parse_when
from rolecall.orchestrator.cli.session import session_of
from rolecall.orchestrator.errors import UsageError
from rolecall.reports.tabular import write_rows
from rolecall.terminal_text import terminal_safe

# The database layer is loaded by the command that runs (see rolecall.orchestrator.cli.app).

# How each kind of change reads in text output.
TEXT_LABELS = {
    "new-asset": "new host",
    "gone-asset": "gone host",
    "opened-port": "port opened",
    "closed-port": "port closed",
    "new-role": "role gained",
    "lost-role": "role lost",
    "new-finding": "new finding",
    "resolved-finding": "finding resolved",
}


class ChangesFormat(StrEnum):
    """How `changes` prints."""

    text = "text"
    json = "json"
    csv = "csv"


def changes(
    ctx: typer.Context,
    since: Annotated[
        str, typer.Option("--since", help="Start of the period (ISO date or time, UTC).")
    ],
    until: Annotated[
        str | None, typer.Option("--until", help="End of the period (default: now).")
    ] = None,
    fmt: Annotated[
        ChangesFormat, typer.Option("--format", help="text, json (one document) or csv.")
    ] = ChangesFormat.text,
) -> None:
    """Hosts new and gone, ports opened and closed, roles gained and lost, findings new or resolved.

    Like ndiff for two scans, over all the evidence between --since and --until.
    """
    start = parse_when(since, "--since")
    end = parse_when(until, "--until") if until is not None else datetime.now(UTC)
    if start >= end:
        raise UsageError(f"the period is empty: --since {since} is not before its end")
    store = session_of(ctx).existing_store()
    from rolecall.inventory.changes import changes_between
    from rolecall.reports.period_tables import CHANGE_COLUMNS, change_rows

    with store.read("read what changed") as connection:
        rows = list(change_rows(changes_between(connection, start, end)))
    if fmt is not ChangesFormat.text:
        write_rows(rows, CHANGE_COLUMNS, fmt.value, sys.stdout)
        return
    for row in rows:
        detail = f" {terminal_safe(row['detail'])}" if row["detail"] else ""
        typer.echo(f"{TEXT_LABELS[row['change']]:<16} {terminal_safe(row['address'])}{detail}")
    if not rows:
        typer.echo(f"no changes from {start:%Y-%m-%d %H:%M:%S} to {end:%Y-%m-%d %H:%M:%S} UTC")
