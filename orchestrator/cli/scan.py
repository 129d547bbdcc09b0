"""`rolecall scan subnet`: parse the targets and options, run the scan, print its summary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import typer

from rolecall.orchestrator.cli.session import Session, session_of
from rolecall.orchestrator.errors import UsageError
from rolecall.orchestrator.node_names import node_name

# The config's checks, the scanner and Celery load in the command that runs (see cli.session).

scan_app = typer.Typer(no_args_is_help=True, help="Active scans of networks in scope.")

TopPortsOption = Annotated[
    int | None,
    typer.Option(
        "--top-ports",
        min=1,
        max=65535,
        help="nmap's N most common TCP ports instead of a list (not with --ports).",
    ),
]


@scan_app.command("subnet")
def scan_subnet(
    ctx: typer.Context,
    targets: Annotated[
        list[str],
        typer.Argument(
            metavar="CIDR...",
            help="Networks to scan. IPv4 or IPv6; of an IPv6 prefix wider than [scan]"
            " max_ipv6_sweep, only the addresses the inventory knows.",
        ),
    ],
    ports: Annotated[
        str | None, typer.Option("--ports", help="TCP ports, e.g. 22,25,80,8000-8100.")
    ] = None,
    top_ports: TopPortsOption = None,
    probes: Annotated[
        str | None,
        typer.Option(
            "--probes",
            help="Active probes on open ports, e.g. socks,smtp (default: [probes] enabled;"
            " 'none' for port discovery only).",
        ),
    ] = None,
    site: Annotated[
        str | None,
        typer.Option(
            "--site",
            metavar="NAME",
            help="Queue the scan in chunks to this site's workers (rolecall worker --site).",
        ),
    ] = None,
    no_wait: Annotated[
        bool,
        typer.Option(
            "--no-wait", help="With --site: print the run id and return; `rolecall runs` follows."
        ),
    ] = False,
) -> None:
    """Discover open ports on networks in scope, probe what they speak, store what was found."""
    session = session_of(ctx)
    if ports is not None and top_ports is not None:
        raise UsageError("--ports and --top-ports: give one list of ports, not both")
    if ports is not None:
        from rolecall.orchestrator.config import parse_ports

        try:
            ports = parse_ports(ports)
        except ValueError as exc:
            raise UsageError(f"--ports: {exc}") from None
    chosen = None
    if probes is not None:
        chosen = [] if probes == "none" else [name.strip() for name in probes.split(",")]
    if site is not None:
        site = node_name(site, "--site")
        _scan_at_site(session, targets, site, no_wait, ports, chosen, top_ports)
        return
    if no_wait:
        raise UsageError("--no-wait: only a scan queued to workers (--site NAME) can be left")
    # Loaded when the command runs, so that every other command starts without the scanner.
    from rolecall.orchestrator.runs.scan import scan_subnets

    summary = scan_subnets(
        session.store(), session.config, targets, session.reporter, ports, chosen, top_ports
    )
    _say_scanned(summary.addresses, summary.counts, summary.run_id)


def _say_scanned(addresses: int, counts: Mapping[str, int], run_id: int) -> None:
    """Print a scan's one-line summary."""
    unresolved = (
        f", {counts['names_unresolved']} names not resolved in time"
        if counts.get("names_unresolved")
        else ""
    )
    typer.echo(
        f"scanned {addresses} addresses: {counts.get('hosts_up', 0)} hosts up,"
        f" {counts.get('open_ports', 0)} open ports{unresolved} (run {run_id})"
    )


def _scan_at_site(
    session: Session,
    targets: list[str],
    site: str,
    no_wait: bool,
    ports: str | None,
    probes: list[str] | None,
    top_ports: int | None,
) -> None:
    """Queue the scan to a site's workers; follow it to its end unless told not to wait."""
    # Loaded when the command runs, so that every other command starts without Celery.
    from rolecall.cluster.coordinator import follow, queue_scan
    from rolecall.cluster.errors import ClusterRunError

    store = session.store()
    queued = queue_scan(
        store, session.config, targets, site, session.reporter, ports, probes, top_ports
    )
    session.reporter.note(
        f"queued run {queued.run_id}: {queued.addresses} addresses in {queued.chunks}"
        f" chunks to site {site}"
    )
    if no_wait:
        typer.echo(queued.run_id)
        return
    try:
        state = follow(store, queued, session.reporter)
    except KeyboardInterrupt:
        session.reporter.warn(
            f"stopped following run {queued.run_id}: its chunks go on at site {site};"
            " `rolecall runs` shows how far they got"
        )
        raise typer.Exit(130) from None
    _say_scanned(queued.addresses, state.counts, queued.run_id)
    if state.status != "ok":
        raise ClusterRunError(f"run {queued.run_id} ended {state.status}: {state.error}")
