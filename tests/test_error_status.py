"""One root error type: every error rolecall raises on purpose carries its exit status."""

from __future__ import annotations

import importlib
import pkgutil
import re
import socket
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest

import rolecall
from rolecall.errors import BadInputError, RolecallError
from rolecall.inventory.errors import StoreError
from rolecall.inventory.matching.blocklist import BlocklistError
from rolecall.inventory.store import Store
from rolecall.orchestrator.cli.app import main
from rolecall.orchestrator.errors import RunError, UsageError
from rolecall.probes.errors import InputError, ProbeError
from rolecall.probes.gate import OutOfScopeError
from rolecall.reports.errors import DeliveryError, ReportInputError
from tests.cli_helpers import run_cli

LAB = "127.0.123"
"""The loopback addresses these tests name (nothing is ever sent to them but a refused SYN)."""
ALEMBIC_ONLY = frozenset({"rolecall.inventory.migrations.env"})
"""Modules that run only inside alembic (importing them elsewhere fails)."""


def _exception_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined in a rolecall module, by its full name."""
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(rolecall.__path__, "rolecall."):
        if info.name in ALEMBIC_ONLY:
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return found


def test_every_error_class_subclasses_the_root() -> None:
    classes = _exception_classes()
    assert set(classes) >= {
        "rolecall.errors.RolecallError",
        "rolecall.orchestrator.errors.UsageError",
        "rolecall.probes.gate.OutOfScopeError",
        "rolecall.reports.errors.DeliveryError",
    }
    strays = [
        name
        for name, error in sorted(classes.items())
        if not issubclass(error, RolecallError) and not error.__name__.startswith("_")
    ]
    assert strays == []


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (UsageError, 2),
        (InputError, 2),
        (StoreError, 2),
        (OutOfScopeError, 2),
        (ReportInputError, 2),
        (BlocklistError, 2),
        (RunError, 1),
        (ProbeError, 1),
        (DeliveryError, 1),
    ],
)
def test_bad_input_is_2_and_other_failures_1(error: type[RolecallError], status: int) -> None:
    assert error.exit_status == status
    assert issubclass(error, BadInputError) == (status == 2)


def _missing_config(tmp_path: Path, _: ExitStack) -> list[str]:
    """A config file that is not there."""
    return ["--config", str(tmp_path / "missing.toml"), "export", "runs"]


def _not_a_database(tmp_path: Path, _: ExitStack) -> list[str]:
    """A database path that holds notes, not SQLite."""
    notes = tmp_path / "notes.db"
    notes.write_text("these are my notes, not a database\n" * 10)
    return ["--db", str(notes), "export", "inventory"]


def _missing_zeek_logs(tmp_path: Path, _: ExitStack) -> list[str]:
    """Zeek logs from a directory that is not there."""
    return ["--db", str(tmp_path / "inventory.db"), "ingest", "zeek", str(tmp_path / "none")]


def _missing_nmap(tmp_path: Path, _: ExitStack) -> list[str]:
    """A scan with an nmap that is not installed."""
    config = tmp_path / "rolecall.toml"
    config.write_text('[scan]\nnmap = "nmap-not-installed-here"\n')
    db = str(tmp_path / "inventory.db")
    return ["--config", str(config), "--db", db, "scan", "subnet", f"{LAB}.1"]


def _outside_scope(tmp_path: Path, stack: ExitStack) -> list[str]:
    """A scan of a target outside the scope (nmap missing too: nothing could be sent)."""
    args = _missing_nmap(tmp_path, stack)
    Path(args[1]).write_text(
        f'[scope]\nallow = ["{LAB}.0/28"]\n[scan]\nnmap = "nmap-not-installed-here"\n'
    )
    return [*args[:-1], f"{LAB}.64/29"]


def _inventory(tmp_path: Path) -> str:
    """An empty inventory (the commands below only read one), made by the store as a scan would."""
    db = str(tmp_path / "inventory.db")
    Store.open(db).close()
    return db


def _bad_blocklist(tmp_path: Path, _: ExitStack) -> list[str]:
    """A blocklist file with a line that is no network."""
    blocklist = tmp_path / "drop.txt"
    blocklist.write_text("10.0.0.0/8\nnot-an-address\n")
    config = tmp_path / "rolecall.toml"
    config.write_text(f'[findings]\nblocklists = ["{blocklist}"]\n')
    db = _inventory(tmp_path)
    return ["--config", str(config), "--db", db, "findings", "derive"]


def _unknown_cluster_field(tmp_path: Path, _: ExitStack) -> list[str]:
    """Mail clusters by a field there is not."""
    return ["--db", _inventory(tmp_path), "mail", "cluster", "nope", "--on", "rcpt"]


def _relay_down(tmp_path: Path, stack: ExitStack) -> list[str]:
    """A report mailed to a relay port that is bound but never listens: refused."""
    closed = stack.enter_context(socket.socket())
    closed.bind((f"{LAB}.25", 0))
    config = tmp_path / "rolecall.toml"
    config.write_text(
        f'[email]\nhost = "{LAB}.25"\nport = {closed.getsockname()[1]}\ntls = "none"\n'
        'to = ["soc@example.org"]\ntimeout = 5.0\n'
        f'keep_dir = "{tmp_path / "kept"}"\n'
    )
    db = _inventory(tmp_path)
    return ["--config", str(config), "--db", db, "report", "email"]


Case = Callable[[Path, ExitStack], list[str]]


@pytest.mark.parametrize(
    ("error", "case"),
    [
        (UsageError, _missing_config),
        (StoreError, _not_a_database),
        (InputError, _missing_zeek_logs),
        (OutOfScopeError, _outside_scope),
        (BlocklistError, _bad_blocklist),
        (ReportInputError, _unknown_cluster_field),
        (ProbeError, _missing_nmap),
        (DeliveryError, _relay_down),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_the_exit_status_is_the_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, error: type[RolecallError], case: Case
) -> None:
    with ExitStack() as stack:
        args = case(tmp_path, stack)
        with pytest.raises(RolecallError) as raised:
            main(["--debug", *args])
        result = run_cli(capsys, *args)
    seen = raised.value
    # A layer above may restate the error as its own (a report's bad field as a usage error).
    assert isinstance(seen, error) or isinstance(seen.__context__, error)
    assert result.code == error.exit_status == seen.exit_status
    # The same sentence both times, but for a failed run's id and time.
    line = result.err.strip().splitlines()[-1]
    assert re.sub(r"\d+", "N", line) == re.sub(r"\d+", "N", f"rolecall: {seen}")
    assert "Traceback" not in result.err
