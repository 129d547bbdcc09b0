"""Shared fixtures: a temporary inventory path and loopback listeners."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cli_helpers import Listener


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
