"""What loading the command line costs: each command loads what it uses, when it runs.

Timings flake on a shared machine (bench/startup.py measures them); these tests guard the
structure that makes start-up fast: which modules a fresh process has loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import typer

from rolecall.orchestrator.cli.app import app
from tests.cli_helpers import command_paths
from tests.pcap_helpers import tcp_segment, write_pcap

# Loaded by no `--help`: the database layer, the readers, the web stack, the mailers,
# Celery, the renderer, the progress display, the config's models and the settings.
NEVER_FOR_HELP = (
    "alembic",
    "celery",
    "dpkt",
    "httpx",
    "jinja2",
    "maxminddb",
    "netaddr",
    "rich",
    "smtplib",
    "sqlalchemy",
    "starlette",
    "uvicorn",
    "rolecall.inventory.store",
    "rolecall.inventory.tables",
    "rolecall.orchestrator.config",
    "rolecall.orchestrator.settings",
    "rolecall.probes.passive.pcap.read",
)


def _loaded_after(code: str) -> list[str]:
    """The modules a fresh interpreter has loaded after running code (its stdout kept apart)."""
    program = (
        "import contextlib, io, json, sys\n"
        f"with contextlib.redirect_stdout(io.StringIO()):\n    {code}\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout)
    return loaded


def _heavy(loaded: list[str], names: tuple[str, ...]) -> list[str]:
    """The loaded modules that are one of names or inside one of them."""
    inside = tuple(f"{name}." for name in names)
    return [module for module in loaded if module in names or module.startswith(inside)]


def test_loading_the_cli_loads_no_command_s_dependencies() -> None:
    """`ingest pcap` starts reading a large capture while SQLAlchemy loads (see cli._ingest)."""
    loaded = _loaded_after("import rolecall.orchestrator.cli.app")
    assert _heavy(loaded, (*NEVER_FOR_HELP, "pydantic")) == []


def test_root_help_loads_nothing_a_command_uses() -> None:
    loaded = _loaded_after("from rolecall.orchestrator.cli.app import main; main(['--help'])")
    # Typer checks option values with pydantic: only a command's parsing loads it.
    assert _heavy(loaded, (*NEVER_FOR_HELP, "pydantic")) == []


def test_every_command_s_help_loads_nothing_a_command_uses() -> None:
    paths = [list(path) for path in command_paths(typer.main.get_command(app)) if path]
    calls = "; ".join(f"main({[*path, '--help']!r})" for path in paths)
    loaded = _loaded_after(f"from rolecall.orchestrator.cli.app import main; {calls}")
    assert _heavy(loaded, NEVER_FOR_HELP) == []


def test_an_ingest_loads_only_its_own_reader(tmp_path: Path) -> None:
    log = tmp_path / "conn.log"
    log.write_text("#fields\tts\tuid\n")
    args = ["--db", str(tmp_path / "new.db"), "-q", "ingest", "zeek", str(log)]
    loaded = _loaded_after(f"from rolecall.orchestrator.cli.app import main; main({args!r})")
    others = (
        "dpkt",
        "rolecall.probes.passive.pcap",
        "rolecall.probes.nmap.xml",
        "rolecall.probes.passive.firewall",
        "rolecall.reports.geo",
    )
    assert "rolecall.probes.passive.zeek.records" in loaded
    assert _heavy(loaded, others) == []


def test_a_quiet_pcap_ingest_loads_no_sender_and_no_progress_bar(tmp_path: Path) -> None:
    """The config holds the alert outputs' settings: their senders load only to send."""
    syn = tcp_segment("10.0.0.1", 40000, "10.0.0.2", 25, 1, 0, 0x02, b"")
    capture = write_pcap(tmp_path / "one.pcap", [(1_700_000_000.0, syn)])
    args = ["--db", str(tmp_path / "new.db"), "-q", "ingest", "pcap", str(capture)]
    code = f"from rolecall.orchestrator.cli.app import main; assert main({args!r}) == 0"
    loaded = _loaded_after(code)
    assert "rolecall.orchestrator.config" in loaded
    assert "rolecall.probes.passive.pcap.read" in loaded
    senders = ("httpx", "rich", "smtplib", "rolecall.reports.delivery")
    assert _heavy(loaded, senders) == []


def test_a_new_inventory_is_made_without_alembic(tmp_path: Path) -> None:
    """The models make a new SQLite inventory; the migrations upgrade older ones."""
    database = tmp_path / "new.db"
    loaded = _loaded_after(
        f"from rolecall.inventory.store import Store; Store.open({str(database)!r}).close()"
    )
    assert _heavy(loaded, ("alembic", "rolecall.inventory.migrations")) == []
    assert database.stat().st_size > 0


def test_loading_pauses_the_collector_and_freezes_only_where_the_process_froze() -> None:
    check = (
        "import gc, json\n"
        "from rolecall.orchestrator.cli.loading import loading\n"
        "def counts():\n"
        "    with loading():\n"
        "        inside = gc.isenabled()\n"
        "        kept = [[] for _ in range(1000)]\n"
        "    return inside, gc.isenabled(), gc.get_freeze_count()\n"
        "before = counts()\n"
        "gc.freeze()\n"
        "frozen = gc.get_freeze_count()\n"
        "after = counts()\n"
        "print(json.dumps([before, after[:2], after[2] > frozen]))\n"
    )
    said = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(said) == [[False, True, 0], [False, True], True]
