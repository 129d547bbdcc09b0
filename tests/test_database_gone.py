"""A PostgreSQL inventory that goes away mid-run, or cannot be reached: one sentence, no mess."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rolecall.inventory.store import Store
from tests.daemon_helpers import ROLECALL
from tests.inventory_sql import query
from tests.nmap_samples import write_scan
from tests.postgres_server import PostgresServer

HOSTS = 80_000
PASSWORD = "not-for-your-eyes"


@pytest.fixture(scope="module")
def own_server() -> Iterator[PostgresServer]:
    """A cluster of this module's own: halting it must not take the suite's away."""
    server = PostgresServer.start()
    yield server
    server.stop()


def _with_password(url: str) -> str:
    """The URL with a password in it (trust authentication ignores it; output must hide it)."""
    return url.replace("@", f":{PASSWORD}@", 1)


def _wait_for(condition_met: Callable[[], bool], what: str, seconds: float = 60.0) -> None:
    """Poll a condition until it holds; fail the test if it never does."""
    deadline = time.monotonic() + seconds
    while not condition_met():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _writing(url: str) -> bool:
    """Whether an ingest's open transaction has written its first batches to asset."""
    found = query(
        url,
        "SELECT count(*) FROM pg_locks JOIN pg_class ON pg_locks.relation = pg_class.oid"
        " WHERE pg_class.relname = 'asset' AND pg_locks.mode = 'RowExclusiveLock'"
        " AND pg_locks.pid <> pg_backend_pid()",
    )
    return bool(found[0][0] > 0)


def _ingest(url: str, scan: Path) -> subprocess.Popen[str]:
    """Start `rolecall ingest nmap-xml` of scan into url."""
    return subprocess.Popen(
        [*ROLECALL, "--db", url, "-q", "ingest", "nmap-xml", str(scan)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_database_gone_mid_ingest_is_one_sentence_and_leaves_nothing_half_written(
    own_server: PostgresServer, tmp_path: Path
) -> None:
    url = own_server.create_database()
    Store.open(url).close()
    scan = write_scan(tmp_path / "scan.xml", HOSTS)
    proc = _ingest(_with_password(url), scan)
    try:
        _wait_for(lambda: _writing(url), "the ingest's first batches")
        own_server.halt()
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        own_server.resume()

    assert proc.returncode == 1, err
    assert err.count("\n") == 1, err
    assert err.startswith("rolecall: cannot write records in database postgresql"), err
    assert url.rsplit("/", 1)[1] in err  # names the database
    assert PASSWORD not in err
    assert "Traceback" not in err

    # Nothing half-written: the file's one transaction never committed; the run, whose
    # process is gone, is marked interrupted when the inventory next opens.
    Store.open(url).close()
    assert query(url, "SELECT count(*) FROM asset") == [(0,)]
    assert query(url, "SELECT count(*) FROM ingested_file") == [(0,)]
    assert query(url, "SELECT kind, status FROM run") == [("ingest nmap-xml", "interrupted")]

    again = _ingest(url, scan)
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    assert query(url, "SELECT count(*) FROM asset") == [(HOSTS,)]
    assert query(url, "SELECT status FROM run ORDER BY id") == [("interrupted",), ("ok",)]
    own_server.drop_database(url)


def test_a_database_that_cannot_be_reached_is_one_sentence_and_exit_2(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    url = _with_password(postgres.url("no_such_inventory"))
    wrong_port = url.replace(f":{postgres.port}/", ":1/")
    for target in (wrong_port, url):
        result = subprocess.run(
            [*ROLECALL, "--db", target, "export", "inventory"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert "rolecall: cannot use database postgresql" in result.stderr
        assert "no_such_inventory" in result.stderr
        assert PASSWORD not in result.stderr


def test_a_url_without_a_driver_uses_psycopg_3(postgres: PostgresServer, tmp_path: Path) -> None:
    url = postgres.create_database()
    bare = url.replace("postgresql+psycopg://", "postgresql://")
    scan = write_scan(tmp_path / "scan.xml", 3)
    done = subprocess.run(
        [*ROLECALL, "--db", bare, "-q", "ingest", "nmap-xml", str(scan)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert query(url, "SELECT count(*) FROM asset") == [(3,)]
    postgres.drop_database(url)
