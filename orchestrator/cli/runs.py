"""`rolecall runs`: every scan, ingest, report and scheduled job, with its status."""

from __future__ import annotations

from typing import Any

import typer

from rolecall.orchestrator.cli.listing import FormatOption, ListFormat, print_rows
from rolecall.orchestrator.cli.session import session_of
from rolecall.terminal_text import terminal_safe

RUN_HEADER = "id\tkind\tstatus\tstarted\tended\ttarget\tcounts\terror\thost"


def _counts_text(counts: dict[str, Any]) -> str:
    """A run's counts as `name=number` words."""
    return " ".join(f"{name}={value}" for name, value in counts.items())


def _run_line(row: dict[str, Any]) -> str:
    """One run as a tab-separated line, safe to print to a terminal."""
    cells = [
        str(row["id"]),
        row["kind"],
        row["status"],
        row["started"],
        row["ended"] or "-",
        row["target"],
        _counts_text(row["counts"]),
        row["error"],
        row["host"] or "-",
    ]
    return "\t".join(terminal_safe(cell.replace("\t", " ")) for cell in cells)


def _chunk_line(chunk: dict[str, Any]) -> str:
    """One chunk of a cluster run, indented under its run, safe to print to a terminal."""
    said = (
        f"  chunk {chunk['position']} site {chunk['site']} {chunk['targets']}: {chunk['state']}"
        f" worker {chunk['worker'] or '-'} attempts {chunk['attempts']}"
    )
    if chunk["error"]:
        said += f": {chunk['error']}"
    return terminal_safe(said)


def _echo_run(row: dict[str, Any]) -> None:
    """Print a run's line, then a line per chunk of a cluster scan."""
    typer.echo(_run_line(row))
    for chunk in row["chunks"]:
        typer.echo(_chunk_line(chunk))


def runs(ctx: typer.Context, output: FormatOption = ListFormat.text) -> None:
    """List every run, oldest first: what ran, when, how it ended, what it stored.

    A scan queued to a site's workers shows each chunk's state on a line of its own.
    """
    session = session_of(ctx)
    # Loaded when the command runs, so that every other command starts without the exporter.
    from rolecall.inventory.exports import export_rows

    with session.existing_store().read("list the runs") as connection:
        rows = export_rows(connection, "runs")
        if output is not ListFormat.text:
            print_rows(rows, output)
            return
        first = next(rows, None)
        if first is None:
            typer.echo("no runs")
            return
        typer.echo(RUN_HEADER)
        _echo_run(first)
        for row in rows:
            _echo_run(row)
