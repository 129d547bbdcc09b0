"""The `rolecall` command line: parses arguments, calls the library, maps errors to exit status."""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import Annotated

import typer

from rolecall import __version__
from rolecall.errors import RolecallError
from rolecall.orchestrator.cli.alerts import alerts_app
from rolecall.orchestrator.cli.changes import changes as changes_command
from rolecall.orchestrator.cli.demo import demo as demo_command
from rolecall.orchestrator.cli.export import export
from rolecall.orchestrator.cli.findings import add_commands as add_findings_commands
from rolecall.orchestrator.cli.help_format import plain_help
from rolecall.orchestrator.cli.ingest import ingest_app
from rolecall.orchestrator.cli.prune import prune as prune_command
from rolecall.orchestrator.cli.report import mail_app, report_app
from rolecall.orchestrator.cli.runs import runs as runs_command
from rolecall.orchestrator.cli.scan import scan_app
from rolecall.orchestrator.cli.schedule import run as run_daemon_command
from rolecall.orchestrator.cli.schedule import schedule_app
from rolecall.orchestrator.cli.serve import serve_app
from rolecall.orchestrator.cli.session import Session
from rolecall.orchestrator.cli.worker import worker as worker_command
from rolecall.orchestrator.interrupts import TERMINATED_STATUS, take_sigterm
from rolecall.terminal_text import terminal_safe

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Take a roll call of every host on a network and the roles it plays.",
)
app.add_typer(scan_app, name="scan")
app.add_typer(ingest_app, name="ingest")
app.add_typer(report_app, name="report")
app.add_typer(mail_app, name="mail")
app.add_typer(schedule_app, name="schedule")
add_findings_commands(app)
app.add_typer(alerts_app, name="alerts")
app.add_typer(serve_app, name="serve")
app.command("run")(run_daemon_command)
app.command("demo")(demo_command)
app.command("export")(export)
app.command("runs")(runs_command)
app.command("changes")(changes_command)
app.command("prune")(prune_command)
app.command("worker")(worker_command)

# The root command's options, and what follows each in an example: they go before the command.
GLOBAL_OPTIONS = {
    "--config": " FILE",
    "--db": " PATH",
    "--quiet": "",
    "-q": "",
    "--debug": "",
}


def _print_version(value: bool) -> None:
    """Print the version and stop, for --version."""
    if value:
        typer.echo(f"rolecall {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", metavar="FILE", help="TOML config (default ./rolecall.toml)."),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db", metavar="URL|PATH", help="Inventory: an SQLite path or SQLAlchemy URL."
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Tracebacks on errors.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_print_version, is_eager=True
        ),
    ] = False,
) -> None:
    """Take a roll call of every host on a network and the roles it plays."""
    # Each option is acted on when the command first needs it (see Session): help loads nothing.
    ctx.obj = Session(config, db, quiet)
    # Closed when the command ends, not left to the collector: loaded modules are frozen
    # (gc.freeze), and a frozen SQLite connection is never closed, so never checkpointed.
    ctx.call_on_close(ctx.obj.close)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; errors become one sentence on stderr and an exit status."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        command = typer.main.get_command(app)
        plain_help(command)
        result = command.main(args=args, prog_name="rolecall", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print("rolecall: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:
        if exc.code != TERMINATED_STATUS:
            raise
        # SIGTERM (see interrupts.take_sigterm), the run recorded as interrupted.
        print("rolecall: terminated", file=sys.stderr)
        return TERMINATED_STATUS
    except typer.TyperException as exc:
        misplaced = getattr(exc, "option_name", None)
        if misplaced in GLOBAL_OPTIONS:
            print(
                f"rolecall: {misplaced} is a global option: give it before the command,"
                f" as in `rolecall {misplaced}{GLOBAL_OPTIONS[misplaced]} COMMAND ...`",
                file=sys.stderr,
            )
            return 2
        # Typer's usage errors (unknown option, missing argument) print themselves.
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        return int(getattr(exc, "exit_code", 2))
    except RolecallError as exc:
        if debug:
            raise
        # The sentence may quote input (a path, a file's content, nmap's message): made safe.
        print(f"rolecall: {terminal_safe(str(exc))}", file=sys.stderr)
        return exc.exit_status
    except Exception as exc:
        if debug:
            raise
        said = terminal_safe(str(exc))
        print(f"rolecall: internal error: {type(exc).__name__}: {said}", file=sys.stderr)
        return 1
    if result == 130:
        # Typer turns Ctrl-C into exit status 130 without a word; say what happened.
        print("rolecall: interrupted", file=sys.stderr)
    return result if isinstance(result, int) else 0


def entry() -> None:
    """Console-script entry point."""
    # What is imported by now lives as long as the process: frozen, the collector no
    # longer walks it on every full pass while a reader allocates millions of objects.
    gc.freeze()
    take_sigterm()
    sys.exit(main())
