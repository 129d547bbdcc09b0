"""Shared fixtures: a temporary inventory path and loopback listeners; the suite's own network."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import own_network
from tests.cli_helpers import Listener
from tests.postgres_server import PostgresServer
from tests.report_helpers import build_inventory

OWN_NETWORK = "ROLECALL_TEST_OWN_NETWORK"
"""Set to 0 to run the suite in the machine's own network namespace."""


def pytest_configure(config: pytest.Config) -> None:
    """Let the suite's children be interrupted; as root, move the suite into a network of
    its own (tests/own_network.py says why)."""
    # Started as a background job of a script, the suite inherits SIGINT ignored, and so
    # would every rolecall it runs: the Ctrl-C tests would wait on commands deaf to it.
    # A handled signal is reset to its default in a child; an ignored one stays ignored.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if os.geteuid() != 0 or os.environ.get(OWN_NETWORK) == "0":
        return
    try:
        resolver = own_network.enter()
    except own_network.NamespaceError as exc:
        raise pytest.UsageError(
            f"cannot make the suite's own network: {exc} (set {OWN_NETWORK}=0 to run without one)"
        ) from None
    if resolver is not None:
        config.add_cleanup(lambda: own_network.stop(resolver))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A fresh SQLite inventory path."""
    return tmp_path / "inventory.db"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The suite's PostgreSQL cluster, started on first use and stopped at the end."""
    server = PostgresServer.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty inventory: an SQLite path, then a PostgreSQL database URL."""
    if request.param == "sqlite":
        yield str(tmp_path / "inventory.db")
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    url = server.create_database()
    yield url
    server.drop_database(url)


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


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh, empty inventory one test module shares: an SQLite path, then a PostgreSQL URL."""
    if request.param == "sqlite":
        yield str(tmp_path_factory.mktemp("module") / "inventory.db")
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    url = server.create_database()
    yield url
    server.drop_database(url)


@pytest.fixture(scope="module")
def report_database(module_database: str) -> str:
    """report_inventory's contents, built on SQLite and then on PostgreSQL, one per module."""
    build_inventory(module_database).close()
    return module_database
