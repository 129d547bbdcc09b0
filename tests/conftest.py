"""Shared fixtures: a temporary inventory path and loopback listeners; the suite's own network."""

from __future__ import annotations

import ctypes
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cli_helpers import Listener
from tests.report_helpers import build_inventory

CLONE_NEWNET = 0x40000000
OWN_NETWORK = "ROLECALL_TEST_OWN_NETWORK"
"""Set to 0 to run the suite in the machine's own network namespace."""


def pytest_configure(config: pytest.Config) -> None:
    """As root, move the suite into a network namespace of its own, with only loopback up.

    Every server a test starts, every scan and every capture then happens there: two runs
    of the suite on one machine cannot take each other's addresses, other listeners on the
    machine's loopback are never seen, and no packet can leave the machine.
    """
    if os.geteuid() != 0 or os.environ.get(OWN_NETWORK) == "0":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    # Called before any test starts a thread; threads and processes started later inherit it.
    if libc.unshare(CLONE_NEWNET) != 0:
        raise pytest.UsageError(
            f"cannot make the suite's network namespace: {os.strerror(ctypes.get_errno())}"
            f" (set {OWN_NETWORK}=0 to run without one)"
        )
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A fresh SQLite inventory path."""
    return tmp_path / "inventory.db"


@pytest.fixture
def listeners() -> Iterator[Callable[[str, int], Listener]]:
    """Open loopback listeners for a test and close them afterwards."""
    opened: list[Listener] = []

    def open_listener(address: str, port: int) -> Listener:
        listener = Listener(address, port)
        opened.append(listener)
        return listener

    yield open_listener
    for listener in opened:
        listener.close()


@pytest.fixture(scope="module")
def report_inventory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A derived inventory of conformance captures and 90 days of mail, one per test module."""
    db = tmp_path_factory.mktemp("report") / "inventory.db"
    build_inventory(db).close()
    return db
