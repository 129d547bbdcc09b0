"""`rolecall ingest pcap|zeek|nmap-xml|firewall`: files read into the inventory, what was kept."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rolecall.orchestrator.cli.loading import loading
from rolecall.orchestrator.cli.session import session_of
from rolecall.orchestrator.errors import UsageError

if TYPE_CHECKING:
    from rolecall.orchestrator.runs.ingest import IngestSummary

# The readers, the settings and the database layer load in the command that runs: each
# ingest kind loads only its own reader (see cli.session).

ingest_app = typer.Typer(no_args_is_help=True, help="Passive evidence and existing scans.")


def _ingest(ctx: typer.Context, kind: str, files: list[Path]) -> None:
    """Run an ingest and turn its summary into output and exit status."""
    with loading():
        from rolecall.orchestrator.runs.ingest import close_items, ingest_files, refuse_irregular
        from rolecall.orchestrator.settings import derive_settings, reader

    _refuse_missing(files)
    # Before the reader starts: a pipe would block its opening, a device never end.
    refuse_irregular(kind, files)
    session = session_of(ctx)
    derivation = derive_settings(session.config)
    read = reader(session.config, kind)
    # Called before the store is loaded and opened: a large capture's reading starts now.
    first = read(files[0])
    try:
        store = session.store()
        summary = ingest_files(store, kind, files, read, session.reporter, derivation, first)
    finally:
        close_items(first)
    typer.echo(_describe_ingest(kind, summary))
    for warning in summary.warnings:
        session.reporter.warn(f"warning: {warning.where}: {warning.message}")
    traffic = summary.counts["traffic_warnings"]
    if (unshown := summary.counts["warnings"] + traffic - len(summary.warnings)) > 0:
        kinds = "damaged entries" + (" or traffic warnings" if traffic else "")
        session.reporter.warn(f"warning: and {unshown} more {kinds} (not shown)")
    if summary.failures or summary.counts["warnings"]:
        raise typer.Exit(2)


def _refuse_missing(files: list[Path]) -> None:
    """Refuse, before any run is recorded, files that do not exist: a typo is not a failed run."""
    missing = [path for path in files if not path.exists()]
    if missing:
        raise UsageError(f"no such file: {missing[0]} (nothing ingested, no run recorded)")


def _describe_ingest(kind: str, summary: IngestSummary) -> str:
    """One line saying what an ingest stored and skipped."""
    counts = summary.counts
    stored = sum(n for name, n in counts.items() if name[0].isupper())
    text = f"ingested {counts['files']} {kind} file(s): {stored} records (run {summary.run_id})"
    if counts["files_already_ingested"]:
        text += f"; {counts['files_already_ingested']} already ingested, unchanged"
    if counts["warnings"]:
        text += f"; {counts['warnings']} damaged entries skipped"
    if counts["traffic_warnings"]:
        text += f"; {counts['traffic_warnings']} warning(s) about the captured traffic"
    if summary.failures:
        text += f"; {len(summary.failures)} file(s) could not be read"
    return text


@ingest_app.command("nmap-xml")
def ingest_nmap_xml(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(metavar="FILE...", help="nmap -oX files.")],
) -> None:
    """Import scans made with nmap -oX."""
    _ingest(ctx, "nmap-xml", files)


@ingest_app.command("pcap")
def ingest_pcap(
    ctx: typer.Context,
    files: Annotated[
        list[Path], typer.Argument(metavar="FILE...", help="pcap or pcapng captures, .gz too.")
    ],
) -> None:
    """Read packet captures: SMTP and SOCKS by content, tunnelled mail, flows, names."""
    _ingest(ctx, "pcap", files)


@ingest_app.command("zeek")
def ingest_zeek(
    ctx: typer.Context,
    paths: Annotated[
        list[Path], typer.Argument(metavar="DIR|FILE...", help="Zeek logs or log directories.")
    ],
) -> None:
    """Import Zeek logs (TSV or JSON, gzip'd, rotated, whole archive trees)."""
    from rolecall.probes.passive.zeek.log_format import zeek_files

    files = zeek_files(paths)
    if not files:
        raise UsageError(f"no Zeek logs found in {', '.join(map(str, paths))}")
    _ingest(ctx, "zeek", files)


@ingest_app.command("firewall")
def ingest_firewall(
    ctx: typer.Context,
    files: Annotated[
        list[Path], typer.Argument(metavar="FILE...", help="syslog/journal text with LOG lines.")
    ],
) -> None:
    """Import netfilter LOG lines; outbound SMTP denies are the direct-to-Internet signal."""
    _ingest(ctx, "firewall", files)
