"""`rolecall findings|groups|history ...`: list and acknowledge findings, groups, series."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from rolecall.inventory.vocabulary import METRICS, STATUSES
from rolecall.orchestrator.cli.session import session_of
from rolecall.orchestrator.errors import UsageError
from rolecall.orchestrator.settings import derive_settings
from rolecall.reports.tabular import terminal_safe

if TYPE_CHECKING:
    from rolecall.inventory.store import Store

# The database layer is loaded by the command that runs (see rolecall.orchestrator.cli.app).

findings_app = typer.Typer(no_args_is_help=True, help="Findings: list, acknowledge, re-derive.")
groups_app = typer.Typer(no_args_is_help=True, help="Asset groups and what their hosts do.")
history_app = typer.Typer(no_args_is_help=True, help="Daily series and their baselines.")


class Output(StrEnum):
    """How a command prints."""

    text = "text"
    json = "json"


def _derived_store(ctx: typer.Context) -> Store:
    """The session's store; derived first only if the config changed since the last derivation.

    Every scan and ingest derives, so a listing normally reads without writing.
    """
    session = session_of(ctx)
    store: Store = session.store()
    settings = derive_settings(session.config)
    if store.derived_with() != settings.fingerprint():
        store.derive(settings)
    return store


def _iso(value: datetime) -> str:
    """ISO 8601 UTC text."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@findings_app.command("list")
def findings_list(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option("--status", help="open, resolved or acknowledged.")
    ] = None,
    rule: Annotated[str | None, typer.Option("--rule", help="Only this rule id.")] = None,
    output: Annotated[Output, typer.Option("--format", help="text or json.")] = Output.text,
) -> None:
    """List findings, most severe first."""
    if status is not None and status not in STATUSES:
        raise UsageError(f"--status: {status!r} is not one of {', '.join(STATUSES)}")
    store = _derived_store(ctx)
    from rolecall.inventory.findings import list_findings  # noqa: PLC0415 - see the module's imports

    with store.read("list the findings") as connection:
        found = list_findings(connection, status, rule)
    if output is Output.json:
        for finding in found:
            row = asdict(finding)
            row.update(first_seen=_iso(finding.first_seen), last_seen=_iso(finding.last_seen))
            typer.echo(json.dumps(row))
        return
    for finding in found:
        typer.echo(
            f"{finding.severity:<6} {finding.status:<12} {finding.rule:<22} {finding.address:<16}"
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
    from rolecall.inventory.findings import acknowledge  # noqa: PLC0415 - see the module's imports

    with store.transaction("acknowledge a finding") as connection:
        finding = acknowledge(connection, rule, address, note, datetime.now(UTC))
    if finding is None:
        raise UsageError(f"no {rule} finding on {address} (see `rolecall findings list`)")
    typer.echo(f"acknowledged {rule} on {address}")


@findings_app.command("derive")
def findings_derive(
    ctx: typer.Context,
    full: Annotated[bool, typer.Option("--full", help="Derive everything again.")] = False,
) -> None:
    """Bring roles, groups, findings and history up to date with the evidence and config."""
    session = session_of(ctx)
    summary = session.store().derive(derive_settings(session.config), full=full)
    typer.echo(
        f"{summary.roles} roles, {summary.findings} open findings"
        f" ({'full' if summary.full else 'incremental'}; {summary.hosts_judged} hosts judged)"
    )


@groups_app.command("mail-clients")
def groups_mail_clients(
    ctx: typer.Context,
    output: Annotated[Output, typer.Option("--format", help="text or json.")] = Output.text,
) -> None:
    """How many hosts of each group send SMTP, and which."""
    store = _derived_store(ctx)
    from rolecall.inventory.groups import mail_clients_by_group  # noqa: PLC0415 - see the module's imports

    with store.read("list the mail clients by group") as connection:
        groups = mail_clients_by_group(connection)
    for group in groups:
        if output is Output.json:
            typer.echo(json.dumps(asdict(group)))
        else:
            typer.echo(f"{group.group}: {group.count} ({' '.join(group.addresses)})")


@history_app.command("show")
def history_show(
    ctx: typer.Context,
    metric: Annotated[str, typer.Argument(help=f"One of {', '.join(METRICS)}.")],
    days: Annotated[int, typer.Option("--days", min=1, max=3660)] = 90,
    until: Annotated[str | None, typer.Option("--until", help="Last day (YYYY-MM-DD).")] = None,
    group: Annotated[str | None, typer.Option("--group", help="One group's series.")] = None,
) -> None:
    """Print a daily series with its baseline band (median, low, high)."""
    if metric not in METRICS:
        raise UsageError(f"{metric!r} is not one of {', '.join(METRICS)}")
    try:
        last = date.fromisoformat(until) if until else datetime.now(UTC).date()
    except ValueError:
        raise UsageError(f"--until: {until!r} is not a date like 2026-01-31") from None
    store = _derived_store(ctx)
    from rolecall.inventory.history import daily_points  # noqa: PLC0415 - see the module's imports

    with store.read("read the daily series") as connection:
        points = daily_points(connection, metric, days, last, group)
    for point in points:
        band = "" if point.median is None else f" median {point.median:g}"
        if point.low is not None and point.high is not None:
            band += f" band {point.low:.1f}-{point.high:.1f}"
        typer.echo(f"{point.day.isoformat()} {point.value}{band}")


def add_commands(app: typer.Typer) -> None:
    """Attach the findings, groups and history sub-commands to the root command."""
    app.add_typer(findings_app, name="findings")
    app.add_typer(groups_app, name="groups")
    app.add_typer(history_app, name="history")
