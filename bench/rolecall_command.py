"""The command the benchmarks time: what the installed `rolecall` script runs."""

from __future__ import annotations

import sys


def rolecall_command() -> list[str]:
    """argv prefix that runs rolecall's console entry point with this interpreter."""
    return [sys.executable, "-c", "from rolecall.orchestrator.cli.app import entry; entry()"]
