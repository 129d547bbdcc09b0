"""`rolecall findings|groups|history ...`: list and acknowledge findings, groups, series."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from rolecall.inventory.vocabulary import METRICS, STATUSES
from rolecall.orchestrator.cli.choices import check_group, check_rule
from rolecall.orchestrator.cli.listing import FormatOption, ListFormat, print_rows
from rolecall.orchestrator.cli.report import parse_when
from rolecall.orchestrator.cli.session import session_of
from rolecall.orchestrator.errors import UsageError
from rolecall.terminal_text import terminal_safe

if TYPE_CHECKING:
    from rolecall.inventory.history import DayPoint
    from rolecall.inventory.settings import SurgeSettings
    from rolecall.inventory.store import Store

# The database layer and the settings are loaded by the command that runs (see cli.session).

findings_app = typer.Typer(no_args_is_help=True, help="Findings: list, acknowledge, re-derive.")
groups_app = typer.Typer(no_args_is_help=True, help="Asset groups and what their hosts do.")
history_app = typer.Typer(no_args_is_help=True, help="Daily series and their baselines.")


def _derived_store(ctx: typer.Context) -> Store:
    """The session's store; derived first only if the config changed since the last derivation.

    Every scan and ingest derives, so a listing normally reads without writing.
    """
    from rolecall.orchestrator.settings import derive_settings

    session = session_of(ctx)
    settings = derive_settings(session.config)
    store: Store = session.existing_store()
    if store.derived_with() != settings.fingerprint():
        store.derive(settings)
    return store


@findings_app.command("list")
def findings_list(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option("--status", help="open, resolved or acknowledged.")
    ] = None,
    rule: Annotated[str | None, typer.Option("--rule", help="Only this rule id.")] = None,
    output: FormatOption = ListFormat.text,
) -> None:
    """List findings, most severe first."""
    if status is not None and status not in STATUSES:
        raise UsageError(f"--status: {status!r} is not one of {', '.join(STATUSES)}")
    check_rule(rule)
    store = _derived_store(ctx)
    from rolecall.inventory.exports import iso
    from rolecall.inventory.findings import list_findings

    with store.read("list the findings") as connection:
        found = list_findings(connection, status, rule)
    if output is not ListFormat.text:
        rows = (
            asdict(finding)
            | {"first_seen": iso(finding.first_seen), "last_seen": iso(finding.last_seen)}
            for finding in found
        )
        print_rows(rows, output)
        return
    for finding in found:
        typer.echo(
            f"{finding.severity:<6} {finding.status:<12} {finding.rule:<22}"
            f" {terminal_safe(finding.address):<16}"
            f" {terminal_safe(finding.summary)}"
        )
    if not found:
        typer.echo("no findings")


@findings_app.command("ack")
def findings_ack(
    ctx: typer.Context,
    rule: Annotated[str, typer.Argument(help="The finding's rule id.")],
    address: Annotated[str, typer.Argument(help="The finding's address.")],
    note: Annotated[str, typer.Option("--note", help="Why it is acknowledged.")] = "",
) -> None:
    """Acknowledge a finding: it stays listed, marked acknowledged, with your note."""
    store = _derived_store(ctx)
    from rolecall.inventory.findings import acknowledge

    with store.transaction("acknowledge a finding") as connection:
        finding = acknowledge(connection, rule, address, note, datetime.now(UTC))
    if finding is None:
        raise UsageError(f"no {rule} finding on {address} (see `rolecall findings list`)")
    typer.echo(f"acknowledged {rule} on {address}")
    # The acknowledgement is an alert event: it goes out now, as a derivation's would.
    session = session_of(ctx)
    from rolecall.orchestrator.runs.alerts import deliver_configured

    deliver_configured(store, session.config, session.reporter.note)


@findings_app.command("unack")
def findings_unack(
    ctx: typer.Context,
    rule: Annotated[str, typer.Argument(help="The finding's rule id.")],
    address: Annotated[str, typer.Argument(help="The finding's address.")],
) -> None:
    """Un-acknowledge a finding: it is open again (a "reopened" alert event), its note cleared."""
    store = _derived_store(ctx)
    from rolecall.inventory.findings import unacknowledge

    with store.transaction("un-acknowledge a finding") as connection:
        before = unacknowledge(connection, rule, address)
    if before is None:
        raise UsageError(f"no {rule} finding on {address} (see `rolecall findings list`)")
    if before.status != "acknowledged":
        raise UsageError(f"the {rule} finding on {address} is {before.status}, not acknowledged")
    typer.echo(f"un-acknowledged {rule} on {address}: open again")
    # The reopening is an alert event: it goes out now, as a derivation's would.
    session = session_of(ctx)
    from rolecall.orchestrator.runs.alerts import deliver_configured

    deliver_configured(store, session.config, session.reporter.note)


@findings_app.command("derive")
def findings_derive(
    ctx: typer.Context,
    full: Annotated[bool, typer.Option("--full", help="Derive everything again.")] = False,
) -> None:
    """Bring roles, groups, findings and history up to date with the evidence and config."""
    from rolecall.orchestrator.settings import derive_settings

    session = session_of(ctx)
    settings = derive_settings(session.config)
    summary = session.existing_store().derive(settings, full=full)
    typer.echo(
        f"{summary.roles} roles, {summary.findings} open findings"
        f" ({'full' if summary.full else 'incremental'}; {summary.hosts_judged} hosts judged)"
    )


@groups_app.command("mail-clients")
def groups_mail_clients(
    ctx: typer.Context,
    output: FormatOption = ListFormat.text,
) -> None:
    """How many hosts of each group send SMTP, and which."""
    store = _derived_store(ctx)
    from rolecall.inventory.groups import mail_clients_by_group

    with store.read("list the mail clients by group") as connection:
        groups = mail_clients_by_group(connection)
    if output is not ListFormat.text:
        print_rows((asdict(group) for group in groups), output)
        return
    for group in groups:
        addresses = terminal_safe(" ".join(group.addresses))
        typer.echo(f"{group.group}: {group.count} ({addresses})")


@history_app.command("show")
def history_show(
    ctx: typer.Context,
    metric: Annotated[str, typer.Argument(help=f"One of {', '.join(METRICS)}.")],
    days: Annotated[int, typer.Option("--days", min=1, max=3660)] = 90,
    until: Annotated[str | None, typer.Option("--until", help="Last day (YYYY-MM-DD).")] = None,
    group: Annotated[str | None, typer.Option("--group", help="One group's series.")] = None,
    output: FormatOption = ListFormat.text,
) -> None:
    """Print a daily series with its baseline (median, MAD, band) and surge threshold."""
    if metric not in METRICS:
        raise UsageError(f"{metric!r} is not one of {', '.join(METRICS)}")
    last = parse_when(until, "--until").date() if until else datetime.now(UTC).date()
    check_group(group, session_of(ctx).config)
    store = _derived_store(ctx)
    from rolecall.orchestrator.settings import surge_settings

    surge = surge_settings(session_of(ctx).config)
    from rolecall.inventory.history import daily_points, point_row

    with store.read("read the daily series") as connection:
        points = daily_points(connection, metric, days, last, group, surge)
    if output is not ListFormat.text:
        print_rows((point_row(metric, group, point) for point in points), output)
        return
    _print_history(points, surge)


HISTORY_HEADER = ("day", "value", "median", "MAD", "low", "high", "threshold", "")


def _number(value: float | None, spec: str) -> str:
    """A number as the history table shows it ("-" for none)."""
    return "-" if value is None else format(value, spec)


def _print_history(points: list[DayPoint], surge: SurgeSettings) -> None:
    """The series as an aligned table, then how the baseline and threshold are made."""
    rows = [HISTORY_HEADER] + [
        (
            point.day.isoformat(),
            str(point.value),
            _number(point.median, "g"),
            _number(point.mad, "g"),
            _number(point.low, ".1f"),
            _number(point.high, ".1f"),
            _number(point.threshold, "d"),
            "surge" if point.surge else "",
        )
        for point in points
    ]
    widths = [max(len(row[index]) for row in rows) for index in range(len(HISTORY_HEADER))]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(widths[i]) for i, cell in enumerate(row) if i
        ]
        typer.echo("  ".join(cells).rstrip())
    typer.echo(
        f"baseline: median and MAD of the previous {surge.baseline_days} days (once there are"
        f" {surge.min_baseline_days}); band: median +/- {surge.threshold_mads:g} x 1.4826 x MAD"
        " (at least 1)"
    )
    typer.echo(
        f"threshold: the least value above the band and at least {surge.min_increase} over the"
        " median, a surge"
    )


def add_commands(app: typer.Typer) -> None:
    """Attach the findings, groups and history sub-commands to the root command."""
    app.add_typer(findings_app, name="findings")
    app.add_typer(groups_app, name="groups")
    app.add_typer(history_app, name="history")
