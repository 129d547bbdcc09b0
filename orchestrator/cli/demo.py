"""`rolecall demo`: the command; its run (demo.run) loads only when it is used."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rolecall.orchestrator.cli.session import session_of
from rolecall.orchestrator.demo.layout import DEFAULT_NETWORK, DEFAULT_OUT
from rolecall.terminal_text import terminal_safe

if TYPE_CHECKING:
    from rolecall.orchestrator.demo.run import DemoResult


def _print_result(result: DemoResult) -> None:
    """The report's path and a short summary of the findings, on stdout."""
    typer.echo(f"report: {result.report}")
    typer.echo(f"inventory: {result.database} ({result.capture_kind} capture {result.capture})")
    typer.echo(f"{len(result.findings)} findings in {result.seconds:.1f}s:")
    for rule, address, name, summary in sorted(result.findings):
        typer.echo(f"  {rule:24} {address:15} {name:11} {terminal_safe(summary)}")


def demo(
    ctx: typer.Context,
    out: Annotated[
        Path, typer.Option("--out", help="Directory for the demo's inventory, capture, report.")
    ] = DEFAULT_OUT,
    network: Annotated[
        str, typer.Option("--network", help="Loopback network of the lab (a /26 or larger).")
    ] = DEFAULT_NETWORK,
    recorded: Annotated[
        bool, typer.Option("--recorded", help="Ingest the recorded capture even as root.")
    ] = False,
) -> None:
    """Start a lab of mail servers and proxies on loopback, capture, scan, report (under a minute).

    Everything the demo starts is stopped when it ends, also on Ctrl-C. It
    uses its own inventory in --out, never the one of --db.
    """
    from rolecall.orchestrator.demo.run import DemoSettings, run_demo

    session = session_of(ctx)
    settings = DemoSettings(network=network, out_dir=out, recorded=recorded)
    _print_result(run_demo(settings, session.config, session.reporter))
