"""`rolecall report`, `report email` and `mail cluster`: thin commands over the report jobs."""

from __future__ import annotations

import re
import sys
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rolecall.orchestrator.cli.session import session_of
from rolecall.orchestrator.errors import UsageError
from rolecall.reports.clusters.fields import FIELD_NAMES
from rolecall.reports.errors import ReportInputError
from rolecall.reports.tabular import write_rows
from rolecall.terminal_text import terminal_safe

if TYPE_CHECKING:
    from rolecall.reports.clusters.view import Cluster, ClusterResult

# The database layer, the settings and the renderer load in the command that runs (cli.session).

report_app = typer.Typer(
    invoke_without_command=True,
    help="The report of a period: HTML, CSV or JSON; `report email` sends it.",
)
mail_app = typer.Typer(no_args_is_help=True, help="Questions about the mail seen.")

_DURATION = re.compile(r"^\s*(\d+)\s*([hdw])\s*$")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
COLUMN_WIDTH = 48
MAX_LAST_DAYS = 36525
FIRST_YEAR, LAST_YEAR = 1970, 2999


class ReportFormat(StrEnum):
    """Report formats."""

    html = "html"
    csv = "csv"
    json = "json"


class ClusterFormat(StrEnum):
    """Mail-cluster output formats."""

    table = "table"
    csv = "csv"
    json = "json"
    jsonl = "jsonl"


def parse_when(value: str, option: str) -> datetime:
    """An ISO date or date-time from 1970 to 2999 as an aware UTC datetime (a date: midnight)."""
    try:
        if len(value) == 10:
            parsed = datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        else:
            parsed = datetime.fromisoformat(value)
        parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise UsageError(f"{option}: {value!r} is not a date like 2026-01-31") from None
    # Periods are widened by days and weeks for charts and baselines: dates near the ends of
    # the calendar would overflow there; no evidence is that old or that new.
    if not FIRST_YEAR <= parsed.year <= LAST_YEAR:
        raise UsageError(f"{option}: {value!r} is not between {FIRST_YEAR} and {LAST_YEAR}")
    return parsed


def parse_last(value: str) -> timedelta:
    """A duration like 7d, 24h or 2w, of at most MAX_LAST_DAYS."""
    match = _DURATION.match(value)
    if match is None or int(match.group(1)) == 0:
        raise UsageError(f"--last: {value!r} is not a duration like 7d, 24h or 2w")
    # Compared as whole numbers first: a timedelta of billions of days overflows.
    days = int(match.group(1)) * _UNITS[match.group(2)].total_seconds() / 86400
    if days > MAX_LAST_DAYS:
        raise UsageError(f"--last: {value!r} is longer than {MAX_LAST_DAYS} days (100 years)")
    return int(match.group(1)) * _UNITS[match.group(2)]


def period(since: str | None, last: str | None, until: str | None) -> tuple[datetime, datetime]:
    """The [since, until) period the options ask for (default: the last 7 days)."""
    if since is not None and last is not None:
        raise UsageError("give --since or --last, not both")
    end = parse_when(until, "--until") if until is not None else datetime.now(UTC)
    start = parse_when(since, "--since") if since is not None else end - parse_last(last or "7d")
    if start >= end:
        raise UsageError(f"the period is empty: --since {start:%Y-%m-%d} is not before its end")
    return start, end


SinceOption = Annotated[
    str | None, typer.Option("--since", help="Start of the period (ISO date, UTC).")
]
LastOption = Annotated[
    str | None, typer.Option("--last", help="The period up to now: 7d, 24h, 2w.")
]
UntilOption = Annotated[
    str | None, typer.Option("--until", help="End of the period (default: now).")
]


@report_app.callback()
def report(
    ctx: typer.Context,
    since: SinceOption = None,
    last: LastOption = None,
    until: UntilOption = None,
    fmt: Annotated[ReportFormat, typer.Option("--format", help="Output format.")] = (
        ReportFormat.html
    ),
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Where to write (default rolecall-report.FORMAT; - is stdout)."
        ),
    ] = None,
    bom: Annotated[
        bool, typer.Option("--bom", help="Start CSV files with a UTF-8 byte order mark.")
    ] = False,
) -> None:
    """Write the report of a period: summary, findings, charts, mail, servers, inventory."""
    if ctx.invoked_subcommand is not None:
        return
    session = session_of(ctx)
    store, config = session.existing_store(), session.config
    start, end = period(since, last, until)
    out = output or Path(f"rolecall-report.{fmt.value}")
    from rolecall.orchestrator.runs.report import write_report

    write_report(store, config, fmt.value, start, end, out, bom=bom)
    if out == Path("-"):
        return
    typer.echo(f"wrote {fmt.value} report of {start:%Y-%m-%d} to {end:%Y-%m-%d} to {out}")


@report_app.command("email")
def report_email(
    ctx: typer.Context,
    to: Annotated[
        list[str] | None, typer.Option("--to", help="Recipient (repeat; default email.to).")
    ] = None,
    since: SinceOption = None,
    last: LastOption = None,
    until: UntilOption = None,
) -> None:
    """Send the weekly report now through the configured relay."""
    session = session_of(ctx)
    store, config = session.existing_store(), session.config
    start, end = period(since, last, until)
    from rolecall.orchestrator.runs.report import email_report

    outcome = email_report(store, config, to, start, end)
    typer.echo(
        f"sent {outcome.subject!r} to {', '.join(outcome.recipients)} (run {outcome.run_id});"
        f" kept in {outcome.kept}"
    )


def column_text(text: str) -> str:
    """Text for a table column: safe for a terminal (terminal_safe), cut to the column's width."""
    shown = terminal_safe(text)
    return shown if len(shown) <= COLUMN_WIDTH else shown[: COLUMN_WIDTH - 1] + "…"


def _members(cluster: Cluster) -> str:
    """A cluster's listed values with counts, and how many more there are."""
    text = ", ".join(f"{column_text(value) or '(empty)'} ({n})" for value, n in cluster.members)
    hidden = cluster.distinct - len(cluster.members)
    return text + (f", … {hidden} more" if hidden > 0 else "")


def _print_table(result: ClusterResult) -> None:
    """The clusters as an aligned text table."""
    header = [result.field, "messages", "share", "cumul.", result.on]
    rows = [
        [
            column_text(cluster.value) or "(empty)",
            str(cluster.messages),
            f"{cluster.share * 100:.1f}%",
            f"{cluster.cumulative * 100:.1f}%",
            _members(cluster),
        ]
        for cluster in result.clusters
    ]
    widths = [max(len(row[index]) for row in [header, *rows]) for index in range(4)]
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])] + [row[i].rjust(widths[i]) for i in (1, 2, 3)]
        typer.echo("  ".join([*cells, row[4]]).rstrip())
    typer.echo(f"{len(result.clusters)} clusters of {result.messages} messages")


@mail_app.command("cluster")
def mail_cluster(
    ctx: typer.Context,
    field_name: Annotated[
        str, typer.Argument(metavar="FIELD", help=f"One of: {', '.join(FIELD_NAMES)}.")
    ],
    on: Annotated[str, typer.Option("--on", help="The field listed for each cluster.")],
    where: Annotated[
        str | None,
        typer.Option("--where", help="e.g. 'src_country != US and src_country != lo'."),
    ] = None,
    fmt: Annotated[
        ClusterFormat,
        typer.Option(
            "--format", help="table, csv, json (one document) or jsonl (one object per line)."
        ),
    ] = ClusterFormat.table,
    cover: Annotated[
        float | None,
        typer.Option(
            "--cover",
            min=1,
            max=100,
            help="Only the largest clusters that hold this percent of the messages.",
        ),
    ] = None,
    top: Annotated[int | None, typer.Option("--top", min=1, help="At most this many.")] = None,
    since: SinceOption = None,
    until: UntilOption = None,
) -> None:
    """Group mail by FIELD and list --on's values per group, e.g. `subject --on rcpt`."""
    from rolecall.orchestrator.settings import geo_lookup
    from rolecall.reports.clusters.view import (
        FIELDS,
        ClusterResult,
        check_field,
        cluster_columns,
        cluster_csv_rows,
        cluster_mail,
        cluster_rows,
    )
    from rolecall.reports.clusters.where import parse_where

    session = session_of(ctx)
    store, config = session.existing_store(), session.config
    try:
        check_field(field_name, "FIELD")
        check_field(on, "--on")
        conditions = parse_where(where or "", FIELDS)
    except ReportInputError as exc:
        raise UsageError(str(exc)) from None
    geo = geo_lookup(config)
    start = parse_when(since, "--since") if since else None
    end = parse_when(until, "--until") if until else None
    try:
        with store.read("cluster the mail") as connection:
            result = cluster_mail(
                connection, field_name, on, conditions, geo, since=start, until=end
            )
    finally:
        geo.close()
    clusters = result.covering(cover / 100) if cover is not None else result.clusters
    result = ClusterResult(result.field, result.on, result.messages, clusters[:top])
    if fmt is ClusterFormat.table:
        _print_table(result)
    else:
        rows = cluster_csv_rows(result) if fmt is ClusterFormat.csv else cluster_rows(result)
        write_rows(rows, cluster_columns(result), fmt.value, sys.stdout)
