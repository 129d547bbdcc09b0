"""`rolecall export WHAT`: one of the contract's exports, to stdout or a file."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from rolecall.orchestrator.cli.session import session_of


class ExportWhat(StrEnum):
    """The contract's export names."""

    inventory = "inventory"
    services = "services"
    findings = "findings"
    smtp = "smtp"
    socks = "socks"
    connect = "connect"
    flows = "flows"
    runs = "runs"


class ExportFormat(StrEnum):
    """Export formats."""

    csv = "csv"
    json = "json"
    jsonl = "jsonl"


def export(
    ctx: typer.Context,
    what: Annotated[ExportWhat, typer.Argument(help="What to export.")],
    fmt: Annotated[ExportFormat, typer.Option("--format", help="Output format.")] = (
        ExportFormat.csv
    ),
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write here instead of stdout (- is stdout)."),
    ] = None,
) -> None:
    """Export a table of the inventory with the contract's columns (docs/contract.md)."""
    session = session_of(ctx)
    if output == Path("-"):
        output = None
    # Loaded when the command runs, so that every other command starts without the exporter.
    from rolecall.orchestrator.runs.export import export_to

    count = export_to(session.existing_store(), what.value, fmt.value, output)
    if output is not None:
        session.reporter.note(f"wrote {count} {what.value} rows to {output}")
