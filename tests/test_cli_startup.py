"""What loading the command line costs: the database layer waits for the command that needs it."""

from __future__ import annotations

import subprocess
import sys


def test_loading_the_cli_leaves_the_database_layer_unloaded() -> None:
    """`ingest pcap` starts reading a large capture while SQLAlchemy loads (see cli._ingest)."""
    check = (
        "import sys, rolecall.orchestrator.cli.app; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'sqlmodel')"
        " or m in ('rolecall.inventory.store', 'rolecall.inventory.tables')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"
