"""`rolecall scan subnet`: parse the targets and options, run the scan, print its summary."""

from __future__ import annotations

from typing import Annotated

import typer

from rolecall.orchestrator.cli.session import session_of
from rolecall.orchestrator.config import parse_ports
from rolecall.orchestrator.errors import UsageError

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
) -> None:
    """Discover open ports on networks in scope, probe what they speak, store what was found."""
    session = session_of(ctx)
    if ports is not None and top_ports is not None:
        raise UsageError("--ports and --top-ports: give one list of ports, not both")
    if ports is not None:
        try:
            ports = parse_ports(ports)
        except ValueError as exc:
            raise UsageError(f"--ports: {exc}") from None
    chosen = None
    if probes is not None:
        chosen = [] if probes == "none" else [name.strip() for name in probes.split(",")]
    # Loaded when the command runs, so that every other command starts without the scanner.
    from rolecall.orchestrator.runs.scan import scan_subnets  # noqa: PLC0415

    summary = scan_subnets(
        session.store(), session.config, targets, session.reporter, ports, chosen, top_ports
    )
    counts = summary.counts
    unresolved = (
        f", {counts['names_unresolved']} names not resolved in time"
        if counts["names_unresolved"]
        else ""
    )
    typer.echo(
        f"scanned {summary.addresses} addresses: {counts['hosts_up']} hosts up,"
        f" {counts['open_ports']} open ports{unresolved} (run {summary.run_id})"
    )
