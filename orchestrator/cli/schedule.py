"""`rolecall schedule add|list|remove` and `rolecall run` (the daemon)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rolecall.orchestrator.cli.listing import FormatOption, ListFormat, print_rows
from rolecall.orchestrator.cli.scan import TopPortsOption
from rolecall.orchestrator.cli.session import session_of
from rolecall.orchestrator.errors import UsageError
from rolecall.orchestrator.node_names import node_name
from rolecall.terminal_text import terminal_safe

if TYPE_CHECKING:
    from rolecall.orchestrator.config import ScheduleEntry
    from rolecall.orchestrator.daemon.schedules import ScheduleInfo

schedule_app = typer.Typer(no_args_is_help=True, help="Scheduled scans, ingests and reports.")
add_app = typer.Typer(no_args_is_help=True, help="Add a schedule.")
schedule_app.add_typer(add_app, name="add")

IdOption = Annotated[str | None, typer.Option("--id", help="Schedule id (default: generated).")]
CronOption = Annotated[
    str, typer.Option("--cron", help='Five-field crontab, in UTC, e.g. "0 2 * * *".')
]
EveryOption = Annotated[int, typer.Option("--every", help="Run every N seconds instead.")]
ReplaceOption = Annotated[bool, typer.Option("--replace", help="Replace a schedule with this id.")]
SensorOption = Annotated[
    str | None,
    typer.Option(
        "--sensor", metavar="NAME", help="Run it by this sensor's `rolecall run --sensor`."
    ),
]


# The schedules (APScheduler's triggers and every job's code), the config's checks and the
# scope load only when a schedule command runs, so that the other commands start without them.


def new_id(job: str) -> str:
    """A fresh schedule id for a job added without --id."""
    return f"{job}-{uuid.uuid4().hex[:8]}"


def _entry(values: dict[str, Any]) -> ScheduleEntry:
    """Validate a schedule given on the command line like a [[schedule]] entry."""
    from rolecall.orchestrator.config import schedule_entry

    return schedule_entry(values, "schedule ")


def _store_entry(ctx: typer.Context, entry: ScheduleEntry, replace: bool) -> None:
    """Write the schedule into the inventory's schedule table and say so."""
    session = session_of(ctx)
    from rolecall.inventory.exports import iso
    from rolecall.orchestrator.daemon.schedules import add_schedule

    added = add_schedule(session.store(), entry, replace)
    said = f"added schedule {entry.id}: {entry.job}, next run {iso(added.next_run) or '-'}"
    typer.echo(terminal_safe(said))


def _split(values: list[str]) -> list[str]:
    """Flatten repeated and comma-separated option values."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


@add_app.command("scan")
def add_scan(
    ctx: typer.Context,
    subnet: Annotated[
        list[str], typer.Option("--subnet", help="A CIDR to scan (repeat or comma-separate).")
    ],
    cron: CronOption = "",
    every: EveryOption = 0,
    ports: Annotated[str | None, typer.Option("--ports", help="TCP ports to scan.")] = None,
    top_ports: TopPortsOption = None,
    probes: Annotated[
        str | None, typer.Option("--probes", help="Probes to run (default: [probes] enabled).")
    ] = None,
    site: Annotated[
        str | None,
        typer.Option("--site", metavar="NAME", help="Queue each run to this site's workers."),
    ] = None,
    schedule_id: IdOption = None,
    replace: ReplaceOption = False,
) -> None:
    """Scan subnets on a schedule (an IPv6 prefix too wide to sweep: its known addresses)."""
    from rolecall.orchestrator.scope import Scope, parse_target

    chosen = None if probes is None else ([] if probes == "none" else _split([probes]))
    values: dict[str, Any] = {
        "id": schedule_id or new_id("scan"),
        "job": "scan",
        "cron": cron,
        "every": every,
    }
    subnets = _split(subnet)
    # Refuse now what the daemon would refuse at 2 a.m.: targets outside the configured scope.
    config = session_of(ctx).config
    targets = [parse_target(s) for s in subnets]
    plan = Scope.from_config(config.scope, targets).plan(
        targets, config.scope.max_addresses, config.scan.max_ipv6_sweep
    )
    values |= {"subnets": subnets, "ports": ports, "probes": chosen, "top_ports": top_ports}
    if site is not None:
        values["site"] = node_name(site, "--site")
    entry = _entry(values)
    for network in plan.unswept:
        # Said now: each run scans only the addresses the inventory knows in it by then.
        typer.echo(
            f"schedule {entry.id}: {network} is wider than /{plan.max_ipv6_sweep}"
            " (scan.max_ipv6_sweep): each run scans only the addresses the inventory"
            " knows in it",
            err=True,
        )
    _store_entry(ctx, entry, replace)


@add_app.command("ingest")
def add_ingest(
    ctx: typer.Context,
    watch: Annotated[
        Path, typer.Option("--watch", help="Directory where new pcaps / Zeek logs are dropped.")
    ],
    cron: CronOption = "",
    every: EveryOption = 0,
    sensor: SensorOption = None,
    schedule_id: IdOption = None,
    replace: ReplaceOption = False,
) -> None:
    """Ingest each new capture or Zeek log dropped in a directory once, then move it to done/."""
    values: dict[str, Any] = {"id": schedule_id or new_id("ingest"), "job": "ingest", "cron": cron}
    if sensor is not None:
        # The folder is on the sensor, not here: it can be neither looked at nor resolved.
        if not watch.is_absolute():
            raise UsageError(f"--watch {watch}: give the folder's absolute path on the sensor")
        values |= {"sensor": node_name(sensor, "--sensor"), "watch": str(watch)}
    elif not watch.is_dir():
        raise UsageError(f"--watch {watch}: not a directory")
    else:
        values["watch"] = str(watch.resolve())
    values["every"] = every
    _store_entry(ctx, _entry(values), replace)


@add_app.command("report-email")
def add_report_email(
    ctx: typer.Context,
    cron: CronOption = "0 7 * * MON",
    every: EveryOption = 0,
    to: Annotated[
        list[str] | None, typer.Option("--to", help="Recipient (default: [email] to).")
    ] = None,
    schedule_id: IdOption = None,
    replace: ReplaceOption = False,
) -> None:
    """Email the weekly report on a schedule (default Mondays 07:00 UTC; --every overrides)."""
    values: dict[str, Any] = {
        "id": schedule_id or new_id("report-email"),
        "job": "report-email",
        "cron": cron,
    }
    if every:
        values["cron"] = ""
    values |= {"every": every, "to": _split(to or [])}
    _store_entry(ctx, _entry(values), replace)


def _schedule_row(info: ScheduleInfo) -> dict[str, Any]:
    """A schedule as a JSON object: the crontab or interval and the arguments, typed."""
    from rolecall.inventory.exports import iso

    return {
        "id": info.id,
        "job": info.job,
        "cron": info.schedule.cron or None,
        "every": info.schedule.every or None,
        "arguments": dict(info.schedule.arguments),
        "next_run": iso(info.next_run) or None,
        "source": info.source,
        "sensor": info.schedule.sensor or None,
    }


@schedule_app.command("list")
def schedule_list(ctx: typer.Context, output: FormatOption = ListFormat.text) -> None:
    """Every schedule, from the command line and from the config, with its next run (UTC)."""
    session = session_of(ctx)
    from rolecall.inventory.exports import iso
    from rolecall.orchestrator.daemon.schedules import list_schedules

    found = list_schedules(session.existing_store(), session.config)
    if output is not ListFormat.text:
        print_rows((_schedule_row(info) for info in found), output)
        return
    if not found:
        typer.echo("no schedules")
        return
    typer.echo("id\tjob\twhen\targuments\tnext run\tsource")
    for info in found:
        cells = (info.id, info.job, info.when, info.arguments, iso(info.next_run) or "-")
        typer.echo("\t".join(terminal_safe(cell) for cell in (*cells, info.source)))


@schedule_app.command("remove")
def schedule_remove(
    ctx: typer.Context, schedule_id: Annotated[str, typer.Argument(metavar="ID")]
) -> None:
    """Remove a schedule added with `schedule add`."""
    session = session_of(ctx)
    from rolecall.orchestrator.daemon.schedules import remove_schedule

    remove_schedule(session.existing_store(), schedule_id)
    typer.echo(f"removed schedule {terminal_safe(schedule_id)}")


def run(
    ctx: typer.Context,
    sensor: Annotated[
        str | None,
        typer.Option(
            "--sensor",
            metavar="NAME",
            help="Run only this sensor's schedules (its watched folders on this host).",
        ),
    ] = None,
) -> None:
    """Run the scheduler daemon until SIGTERM or SIGINT (SIGHUP reloads the config)."""
    chosen = "" if sensor is None else node_name(sensor, "--sensor")
    session = session_of(ctx)
    config_path: Path | None = ctx.find_root().params.get("config")
    from rolecall.orchestrator.daemon.service import run_daemon

    raise typer.Exit(run_daemon(session.database, session.config, config_path, chosen))
