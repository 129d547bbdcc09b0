"""Scans queued to site workers: real Redis, real PostgreSQL, `rolecall worker` subprocesses."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli_helpers import Listener
from tests.cluster_helpers import exported, facts, running_workers, write_config
from tests.daemon_helpers import rolecall
from tests.postgres_server import PostgresServer
from tests.redis_server import RedisServer

PORTS = "1080,2525,8080"
LAB = {
    "a": ("127.0.81.0/29", [("127.0.81.1", 2525), ("127.0.81.2", 8080), ("127.0.81.6", 1080)]),
    "b": ("127.0.82.0/29", [("127.0.82.3", 2525), ("127.0.82.5", 8080)]),
}


@pytest.fixture(scope="module")
def broker() -> Iterator[RedisServer]:
    """A Redis broker for this module's tests."""
    server = RedisServer.start()
    yield server
    server.stop()


@pytest.fixture
def inventory(postgres: PostgresServer) -> Iterator[str]:
    """A fresh PostgreSQL inventory the workers and the coordinator share."""
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)


def _lab(listeners: Callable[[str, int], Listener], *sites: str) -> None:
    """Open the listeners of each site's loopback lab."""
    for site in sites:
        for address, port in LAB[site][1]:
            listeners(address, port)


def _runs(cwd: Path, database: str) -> list[dict[str, Any]]:
    """`rolecall runs --format json`."""
    done = rolecall("--db", database, "runs", "--format", "json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def test_two_sites_store_what_a_local_scan_stores(
    tmp_path: Path,
    broker: RedisServer,
    inventory: str,
    listeners: Callable[[str, int], Listener],
) -> None:
    _lab(listeners, "a", "b")
    coordinator = write_config(tmp_path / "coordinator.toml", inventory, broker.url)
    site_a = write_config(tmp_path / "a.toml", inventory, broker.url, [LAB["a"][0]])
    site_b = write_config(tmp_path / "b.toml", inventory, broker.url, [LAB["b"][0]])
    with running_workers(
        (site_a, "a", tmp_path / "a.log"), (site_b, "b", tmp_path / "b.log")
    ) as workers:
        for site in ("a", "b"):
            done = rolecall(
                "--config", str(coordinator), "scan", "subnet", LAB[site][0],
                "--ports", PORTS, "--site", site, cwd=tmp_path,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            opened = len(LAB[site][1])
            assert f"scanned 8 addresses: 8 hosts up, {opened} open ports" in done.stdout
            assert "queued run" in done.stderr
            assert f"2 chunks to site {site}" in done.stderr
        assert all(worker.stop() == 0 for worker in workers)
    # Each site's chunks ran on that site's worker only.
    assert "127.0.81.0/30): scanning" in (tmp_path / "a.log").read_text()
    assert "127.0.82." not in (tmp_path / "a.log").read_text()
    assert "127.0.81." not in (tmp_path / "b.log").read_text()

    local = str(tmp_path / "local.db")
    local_config = write_config(tmp_path / "local.toml", local, broker.url)
    done = rolecall(
        "--config", str(local_config), "scan", "subnet", LAB["a"][0], LAB["b"][0],
        "--ports", PORTS, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    clustered = facts(tmp_path, inventory)
    assert clustered == facts(tmp_path, local)
    assert len(clustered["services"]) == 5

    runs = _runs(tmp_path, inventory)
    assert [(run["kind"], run["status"]) for run in runs] == [("scan", "ok"), ("scan", "ok")]
    chunks = runs[0]["chunks"]
    assert [(c["site"], c["position"], c["targets"], c["state"]) for c in chunks] == [
        ("a", 0, "127.0.81.0/30", "done"),
        ("a", 1, "127.0.81.4/30", "done"),
    ]
    assert all(c["attempts"] == 1 and c["worker"] and c["ended"] for c in chunks)
    assert runs[0]["counts"]["open_ports"] == 3


def test_no_wait_returns_the_run_and_runs_shows_its_chunks(
    tmp_path: Path,
    broker: RedisServer,
    inventory: str,
    listeners: Callable[[str, int], Listener],
) -> None:
    _lab(listeners, "a")
    coordinator = write_config(tmp_path / "coordinator.toml", inventory, broker.url)
    done = rolecall(
        "--config", str(coordinator), "scan", "subnet", LAB["a"][0], "--ports", PORTS,
        "--site", "a", "--no-wait", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    run_id = int(done.stdout.strip())
    # No worker yet: the chunks wait in the queue, and the run is not taken for abandoned.
    (run,) = _runs(tmp_path, inventory)
    assert (run["id"], run["status"]) == (run_id, "running")
    assert [c["state"] for c in run["chunks"]] == ["queued", "queued"]
    text = rolecall("--db", inventory, "runs", cwd=tmp_path)
    assert "  chunk 0 site a 127.0.81.0/30: queued worker - attempts 0" in text.stdout

    site_a = write_config(tmp_path / "a.toml", inventory, broker.url, [LAB["a"][0]])
    with running_workers((site_a, "a", tmp_path / "a.log")):
        deadline = time.monotonic() + 120
        while (run := _runs(tmp_path, inventory)[0])["status"] == "running":
            assert time.monotonic() < deadline, run
            time.sleep(0.5)
    assert run["status"] == "ok"
    assert [c["state"] for c in run["chunks"]] == ["done", "done"]
    assert run["host"] == "", "a queued scan belongs to no process; its chunks name workers"
    text = rolecall("--db", inventory, "runs", cwd=tmp_path)
    assert "  chunk 1 site a 127.0.81.4/30: done worker " in text.stdout
    # CSV keeps the contract's columns; the chunks are in JSON.
    csv = rolecall("--db", inventory, "export", "runs", "--format", "csv", cwd=tmp_path)
    assert csv.stdout.splitlines()[0] == "id,kind,target,started,ended,status,counts,error,host"


def test_a_chunk_outside_the_workers_scope_is_refused_never_probed(
    tmp_path: Path,
    broker: RedisServer,
    inventory: str,
    listeners: Callable[[str, int], Listener],
) -> None:
    _lab(listeners, "a")
    outside = listeners("127.0.83.1", 2525)
    coordinator = write_config(tmp_path / "coordinator.toml", inventory, broker.url)
    site_a = write_config(tmp_path / "a.toml", inventory, broker.url, [LAB["a"][0]])
    with running_workers((site_a, "a", tmp_path / "a.log")):
        done = rolecall(
            "--config", str(coordinator), "scan", "subnet", "127.0.81.0/30", "127.0.83.0/30",
            "--ports", PORTS, "--site", "a", cwd=tmp_path,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "chunk 1 (127.0.83.0/30) refused by worker" in done.stderr
    assert "refused by this worker's [scope]" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("rolecall: run ")
    assert "ended partial" in done.stderr
    assert outside.accepted == 0
    log = (tmp_path / "a.log").read_text()
    assert "127.0.81.0/30): scanning" in log
    assert "127.0.83.0/30): scanning" not in log
    addresses = {row["address"] for row in exported(tmp_path, inventory, "inventory")}
    assert addresses
    assert not any(address.startswith("127.0.83.") for address in addresses)
    (run,) = _runs(tmp_path, inventory)
    assert run["status"] == "partial"
    assert [(c["state"], c["attempts"]) for c in run["chunks"]] == [("done", 1), ("refused", 0)]


def test_a_site_no_worker_serves_is_warned_once_and_still_queued(
    tmp_path: Path,
    broker: RedisServer,
    inventory: str,
    listeners: Callable[[str, int], Listener],
) -> None:
    _lab(listeners, "a")
    coordinator = write_config(tmp_path / "coordinator.toml", inventory, broker.url)
    site_a = write_config(tmp_path / "a.toml", inventory, broker.url, [LAB["a"][0]])
    warning = "no worker serves site b now: the chunks wait in its queue until one starts"
    # A worker of another site answers, but not for this site's queue.
    with running_workers((site_a, "a", tmp_path / "a.log")):
        started = time.monotonic()
        done = rolecall(
            "--config", str(coordinator), "scan", "subnet", LAB["b"][0], "--ports", PORTS,
            "--site", "b", "--no-wait", cwd=tmp_path,
        )  # fmt: skip
        waited = time.monotonic() - started
        served = rolecall(
            "--config", str(coordinator), "scan", "subnet", LAB["a"][0], "--ports", PORTS,
            "--site", "a", "--no-wait", cwd=tmp_path,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.count(warning) == 1
    assert "queued run" in done.stderr
    assert waited < 30
    run_id = int(done.stdout.strip())
    run = next(run for run in _runs(tmp_path, inventory) if run["id"] == run_id)
    assert run["status"] == "running"
    assert [c["state"] for c in run["chunks"]] == ["queued", "queued"]
    # A site a worker serves is not warned about.
    assert served.returncode == 0, served.stderr
    assert "no worker serves" not in served.stderr
