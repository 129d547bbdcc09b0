"""`rolecall alerts pending|test|send`: what waits for each alert output, and trying one."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from rolecall.orchestrator.cli.listing import FormatOption, ListFormat, print_rows
from rolecall.orchestrator.cli.session import session_of
from rolecall.orchestrator.errors import UsageError
from rolecall.terminal_text import terminal_safe

# The database layer and the outputs load when a command runs (see cli.app).

alerts_app = typer.Typer(
    no_args_is_help=True, help="Alert outputs ([[alerts]]): what waits, and a test event."
)


@alerts_app.command("pending")
def alerts_pending(ctx: typer.Context, output: FormatOption = ListFormat.text) -> None:
    """For each alert output: events waiting for it, the oldest one's time, its last error."""
    session = session_of(ctx)
    from rolecall.alerts.delivery import severities_from
    from rolecall.inventory import alert_events
    from rolecall.inventory.exports import iso

    rows: list[dict[str, Any]] = []
    with session.existing_store().read("read the alert cursors") as connection:
        for settings in session.config.alerts:
            cursor = alert_events.cursor(connection, settings.name)
            wait = alert_events.waiting(
                connection, cursor.sequence, severities_from(settings.min_severity), settings.rules
            )
            rows.append(
                {
                    "output": settings.name,
                    "type": getattr(settings, "type", ""),
                    "waiting": wait.count,
                    "oldest_waiting": iso(wait.oldest) or None,
                    "cursor": cursor.sequence,
                    "delivered": iso(cursor.updated) or None,
                    "last_error": cursor.error or None,
                    "last_error_at": iso(cursor.error_at) or None,
                }
            )
    if output is not ListFormat.text:
        print_rows(rows, output)
        return
    if not rows:
        typer.echo("no alert outputs configured (see [[alerts]] in the config)")
        return
    for row in rows:
        oldest = f", oldest {row['oldest_waiting']}" if row["waiting"] else ""
        error = (
            f"; last error {row['last_error_at']}: {row['last_error']}" if row["last_error"] else ""
        )
        typer.echo(
            terminal_safe(
                f"{row['output']} ({row['type']}): {row['waiting']} waiting{oldest}"
                f" (cursor {row['cursor']}){error}"
            )
        )


@alerts_app.command("test")
def alerts_test(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The [[alerts]] entry's name.")],
) -> None:
    """Send one test event to an output and say what happened (exit 1 if it was not taken)."""
    session = session_of(ctx)
    from rolecall.alerts.delivery import send_test
    from rolecall.orchestrator.runs.alerts import opener, output_named

    settings = output_named(session.config, name)
    delivered = send_test(settings, opener(session.config))
    if delivered.count == 1:
        typer.echo(f"alerts {name}: the test event was delivered.")
        return
    reason = delivered.error or "the receiver did not take it"
    typer.echo(
        terminal_safe(f"alerts {name}: the test event was not delivered: {reason}"), err=True
    )
    raise typer.Exit(1)


@alerts_app.command("send")
def alerts_send(ctx: typer.Context) -> None:
    """Send every output the events waiting for it now (exit 1 if one could not take them)."""
    session = session_of(ctx)
    if not session.config.alerts:
        raise UsageError("no alert outputs configured (see [[alerts]] in the config)")
    from rolecall.orchestrator.runs.alerts import deliver_configured

    failed = False

    def warn(message: str) -> None:
        nonlocal failed
        failed = True
        typer.echo(terminal_safe(message), err=True)

    for result in deliver_configured(session.existing_store(), session.config, warn):
        if result.busy:
            typer.echo(f"{result.name}: another process is delivering to it")
        else:
            typer.echo(
                f"{result.name}: {result.sent} sent, {result.passed} left out by its filters"
            )
    if failed:
        raise typer.Exit(1)
