"""The `rolecall` command line: parses arguments, calls the library, maps errors to exit status."""

from __future__ import annotations

import gc
import sys
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rolecall.inventory.errors import StoreError
from rolecall.orchestrator.cli.demo import demo as demo_command
from rolecall.orchestrator.cli.findings import add_commands as add_findings_commands
from rolecall.orchestrator.cli.report import mail_app, report_app
from rolecall.orchestrator.cli.schedule import run as run_daemon_command
from rolecall.orchestrator.cli.schedule import schedule_app
from rolecall.orchestrator.config import Config, load_config, parse_ports
from rolecall.orchestrator.errors import RunError, UsageError
from rolecall.orchestrator.progress import Reporter
from rolecall.orchestrator.runs.ingest import (
    IngestSummary,
    Reader,
    close_items,
    ingest_files,
    readers,
)
from rolecall.orchestrator.settings import derive_settings
from rolecall.probes.errors import InputError, ProbeError
from rolecall.probes.gate import OutOfScopeError
from rolecall.probes.nmap.xml import read_nmap_xml_file
from rolecall.probes.passive.firewall import FirewallSettings, read_firewall
from rolecall.probes.passive.zeek.log_format import zeek_files

if TYPE_CHECKING:
    from rolecall.inventory.store import Store

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Take a roll call of every host on a network and the roles it plays.",
)
scan_app = typer.Typer(no_args_is_help=True, help="Active scans of networks in scope.")
ingest_app = typer.Typer(no_args_is_help=True, help="Passive evidence and existing scans.")
app.add_typer(scan_app, name="scan")
app.add_typer(ingest_app, name="ingest")
app.add_typer(report_app, name="report")
app.add_typer(mail_app, name="mail")
app.add_typer(schedule_app, name="schedule")
add_findings_commands(app)
app.command("run")(run_daemon_command)
app.command("demo")(demo_command)

# LAZY: a command's heavy modules (scanner, exporter) load when it runs, so that every
# other command, an ingest from cron above all, starts without them.
BAD_INPUT = (UsageError, InputError, StoreError, OutOfScopeError)
FAILURE = (RunError, ProbeError)


class ExportWhat(StrEnum):
    """The SPEC's export names."""

    inventory = "inventory"
    services = "services"
    findings = "findings"
    smtp = "smtp"
    socks = "socks"
    flows = "flows"
    runs = "runs"


class ExportFormat(StrEnum):
    """Export formats."""

    csv = "csv"
    json = "json"
    jsonl = "jsonl"


@dataclass
class Session:
    """What every command needs: the config, where the database is, how to talk."""

    config: Config
    database: str
    reporter: Reporter
    _store: Store | None = field(default=None, init=False)

    def store(self) -> Store:
        """Open the inventory on first use."""
        if self._store is None:
            # Loaded here, not with this module: an ingest starts reading a large file in a
            # second process first, and loading the database layer overlaps with that.
            from rolecall.inventory.store import Store  # noqa: PLC0415 - see the comment above

            self._store = Store.open(self.database)
        return self._store


def _session(ctx: typer.Context) -> Session:
    """The session the root callback built."""
    session: Session = ctx.obj
    return session


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML config (default ./rolecall.toml).")
    ] = None,
    db: Annotated[
        str | None, typer.Option("--db", help="Inventory: an SQLite path or SQLAlchemy URL.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Tracebacks on errors.")] = False,
) -> None:
    """Take a roll call of every host on a network and the roles it plays."""
    loaded, _ = load_config(config)
    ctx.obj = Session(loaded, db or loaded.database.url, Reporter(quiet=quiet))


@scan_app.command("subnet")
def scan_subnet(
    ctx: typer.Context,
    targets: Annotated[list[str], typer.Argument(metavar="CIDR...", help="Networks to scan.")],
    ports: Annotated[
        str | None, typer.Option("--ports", help="TCP ports, e.g. 22,25,80,8000-8100.")
    ] = None,
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
    session = _session(ctx)
    if ports is not None:
        try:
            ports = parse_ports(ports)
        except ValueError as exc:
            raise UsageError(f"--ports: {exc}") from None
    chosen = None
    if probes is not None:
        chosen = [] if probes == "none" else [name.strip() for name in probes.split(",")]
    from rolecall.orchestrator.runs.scan import scan_subnets  # noqa: PLC0415 - see LAZY

    summary = scan_subnets(
        session.store(), session.config, targets, session.reporter, ports, chosen
    )
    counts = summary.counts
    typer.echo(
        f"scanned {summary.addresses} addresses: {counts['hosts_up']} hosts up,"
        f" {counts['open_ports']} open ports (run {summary.run_id})"
    )


def _ingest(ctx: typer.Context, kind: str, files: list[Path], reader: Reader) -> None:
    """Run an ingest and turn its summary into output and exit status."""
    session = _session(ctx)
    derivation = derive_settings(session.config)
    # Called before the store is loaded and opened: a large capture's reading starts now.
    first = reader(files[0])
    try:
        store = session.store()
        summary = ingest_files(store, kind, files, reader, session.reporter, derivation, first)
    finally:
        close_items(first)
    typer.echo(_describe_ingest(kind, summary))
    for warning in summary.warnings:
        session.reporter.note(f"warning: {warning.where}: {warning.message}")
    if summary.failures or summary.counts["warnings"]:
        raise typer.Exit(2)


def _describe_ingest(kind: str, summary: IngestSummary) -> str:
    """One line saying what an ingest stored and skipped."""
    counts = summary.counts
    stored = sum(n for name, n in counts.items() if name[0].isupper())
    text = f"ingested {counts['files']} {kind} file(s): {stored} records (run {summary.run_id})"
    if counts["files_already_ingested"]:
        text += f"; {counts['files_already_ingested']} already ingested, unchanged"
    if counts["warnings"]:
        text += f"; {counts['warnings']} damaged entries skipped"
    if summary.failures:
        text += f"; {len(summary.failures)} file(s) could not be read"
    return text


@ingest_app.command("nmap-xml")
def ingest_nmap_xml(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(metavar="FILE...", help="nmap -oX files.")],
) -> None:
    """Import scans made with nmap -oX."""
    _ingest(ctx, "nmap-xml", files, read_nmap_xml_file)


@ingest_app.command("pcap")
def ingest_pcap(
    ctx: typer.Context,
    files: Annotated[
        list[Path], typer.Argument(metavar="FILE...", help="pcap or pcapng captures, .gz too.")
    ],
) -> None:
    """Read packet captures: SMTP and SOCKS by content, tunnelled mail, flows, names."""
    _ingest(ctx, "pcap", files, readers(_session(ctx).config)["pcap"])


@ingest_app.command("zeek")
def ingest_zeek(
    ctx: typer.Context,
    paths: Annotated[
        list[Path], typer.Argument(metavar="DIR|FILE...", help="Zeek logs or log directories.")
    ],
) -> None:
    """Import Zeek logs (TSV or JSON, gzip'd, rotated, whole archive trees)."""
    files = zeek_files(paths)
    if not files:
        raise UsageError(f"no Zeek logs found in {', '.join(map(str, paths))}")
    _ingest(ctx, "zeek", files, readers(_session(ctx).config)["zeek"])


@ingest_app.command("firewall")
def ingest_firewall(
    ctx: typer.Context,
    files: Annotated[
        list[Path], typer.Argument(metavar="FILE...", help="syslog/journal text with LOG lines.")
    ],
) -> None:
    """Import netfilter LOG lines; outbound SMTP denies are the direct-to-Internet signal."""
    section = _session(ctx).config.firewall
    try:
        settings = FirewallSettings(
            deny_prefixes=tuple(section.deny_prefixes),
            accept_prefixes=tuple(section.accept_prefixes),
            timezone=section.timezone,
        )
    except ValueError as exc:
        raise UsageError(f"firewall.timezone: {exc}") from None
    _ingest(ctx, "firewall", files, partial(read_firewall, settings=settings))


@app.command("export")
def export(
    ctx: typer.Context,
    what: Annotated[ExportWhat, typer.Argument(help="What to export.")],
    fmt: Annotated[ExportFormat, typer.Option("--format", help="Output format.")] = (
        ExportFormat.csv
    ),
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Export a table of the inventory with SPEC's columns."""
    session = _session(ctx)
    from rolecall.orchestrator.runs.export import export_to  # noqa: PLC0415 - see LAZY

    count = export_to(session.store(), what.value, fmt.value, output)
    if output is not None:
        session.reporter.note(f"wrote {count} {what.value} rows to {output}")


def _exit_code(exc: BaseException) -> int | None:
    """The exit status for an error rolecall knows, or None for an unexpected one."""
    if isinstance(exc, BAD_INPUT):
        return 2
    if isinstance(exc, FAILURE):
        return 1
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the command line; errors become one sentence on stderr and an exit status."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        result = app(args=args, prog_name="rolecall", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print("rolecall: interrupted", file=sys.stderr)
        return 130
    except typer.TyperException as exc:
        # Typer's usage errors (unknown option, missing argument) print themselves.
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        return int(getattr(exc, "exit_code", 2))
    except Exception as exc:
        code = _exit_code(exc)
        if debug:
            raise
        if code is None:
            print(f"rolecall: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        print(f"rolecall: {exc}", file=sys.stderr)
        return code
    if result == 130:
        # Typer turns Ctrl-C into exit status 130 without a word; say what happened.
        print("rolecall: interrupted", file=sys.stderr)
    return result if isinstance(result, int) else 0


def entry() -> None:
    """Console-script entry point."""
    # What is imported by now lives as long as the process: frozen, the collector no
    # longer walks it on every full pass while a reader allocates millions of objects.
    gc.freeze()
    sys.exit(main())
