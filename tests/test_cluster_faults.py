"""Cluster scans when things go wrong: a worker killed mid-chunk, the broker down, bad limits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, update

from rolecall.cluster.app import TASK, cluster_app, site_queue
from rolecall.inventory.errors import StoreError
from rolecall.inventory.store import Store
from rolecall.inventory.tables import SCAN_CHUNK_TABLE
from rolecall.orchestrator.config import load_config
from tests.cli_helpers import Listener
from tests.cluster_helpers import SilentListener, facts, running_workers, write_config
from tests.daemon_helpers import ROLECALL, free_port, rolecall
from tests.postgres_server import PostgresServer
from tests.redis_server import RedisServer

# One chunk of the whole lab; a silent SMTP server keeps the probe waiting for its banner
# for seconds, well within the chunk's time limit and the broker's visibility timeout.
SLOW_CLUSTER = "chunk_addresses = 8\nchunk_time_limit = 15\nvisibility_timeout = 20\n"
SLOW_PROBES = "[probes]\nbanner_timeout = 2.0\nread_timeout = 2.0\n"


@pytest.fixture
def broker() -> Iterator[RedisServer]:
    """A Redis broker of this test's own."""
    server = RedisServer.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """This module's own PostgreSQL: its tests halt it, which the suite's shared one must not be."""
    server = PostgresServer.start()
    yield server
    server.stop()


@pytest.fixture
def inventory(postgres: PostgresServer) -> Iterator[str]:
    """A fresh PostgreSQL inventory."""
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)


def _run(cwd: Path, database: str) -> dict[str, Any]:
    """The only run of the inventory, as `runs --format json` shows it."""
    done = rolecall("--db", database, "runs", "--format", "json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    (run,) = json.loads(done.stdout)
    assert isinstance(run, dict)
    return run


def test_a_worker_killed_mid_chunk_is_replaced_and_the_rows_match(
    tmp_path: Path,
    broker: RedisServer,
    inventory: str,
    listeners: Callable[[str, int], Listener],
) -> None:
    silent = SilentListener("127.0.81.1", 2525)
    try:
        listeners("127.0.81.2", 8080)
        scan = ["127.0.81.0/29", "--ports", "2525,8080", "--probes", "smtp"]
        site = write_config(
            tmp_path / "a.toml", inventory, broker.url, ["127.0.81.0/29"], SLOW_PROBES, SLOW_CLUSTER
        )
        coordinator = write_config(
            tmp_path / "c.toml", inventory, broker.url, extra=SLOW_PROBES, cluster=SLOW_CLUSTER
        )
        with running_workers(
            (site, "a", tmp_path / "a1.log"), (site, "a", tmp_path / "a2.log")
        ) as workers:
            done = rolecall(
                "--config", str(coordinator), "scan", "subnet", *scan, "--site", "a", "--no-wait",
                cwd=tmp_path,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            store = Store.open(inventory)
            deadline = time.monotonic() + 60
            while (taken := store.scan_chunks.state(1).chunks[0]).state != "running":
                assert time.monotonic() < deadline, taken
                time.sleep(0.05)
            store.close()
            pid = int(taken.worker.rpartition(":")[2])
            (victim,) = [w for w in workers if os.getpgid(pid) == w.process.pid]
            time.sleep(1.0)  # nmap is done, the SMTP probe waits for its banner
            victim.kill_group()
            # Redelivery takes visibility_timeout plus up to 10 s; the redo as long again.
            # Alone this takes under a minute; a loaded CI machine may take several.
            deadline = time.monotonic() + 300
            while (run := _run(tmp_path, inventory))["status"] == "running":
                assert time.monotonic() < deadline, run
                time.sleep(0.5)
        (chunk,) = run["chunks"]
        assert (run["status"], chunk["state"], chunk["attempts"]) == ("ok", "done", 2)
        assert chunk["worker"] != f"{chunk['worker'].rpartition(':')[0]}:{pid}"
        (survivor,) = [w for w in workers if w is not victim]
        assert "127.0.81.0/29): done" in survivor.text()

        local = str(tmp_path / "local.db")
        config = write_config(tmp_path / "local.toml", local, broker.url, extra=SLOW_PROBES)
        done = rolecall("--config", str(config), "scan", "subnet", *scan, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        redone = facts(tmp_path, inventory)
        assert redone == facts(tmp_path, local)
        assert {row[1] for row in redone["observations"]} >= {"host-up", "port-open"}
    finally:
        silent.close()


def test_broker_down_one_sentence_and_nothing_written(tmp_path: Path, db_path: Path) -> None:
    down = f"redis://:hunter2@127.0.0.1:{free_port('127.0.0.1')}/0"
    config = write_config(tmp_path / "c.toml", str(db_path), down)
    done = rolecall(
        "--config", str(config), "scan", "subnet", "127.0.81.0/29", "--site", "a", cwd=tmp_path
    )
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()[-1:]
    assert line.startswith("rolecall: cannot reach the broker redis://:**@127.0.0.1:")
    assert "[cluster] broker" in line
    assert "hunter2" not in done.stderr
    assert "Traceback" not in done.stderr
    listed = rolecall("--db", str(db_path), "runs", "--format", "json", cwd=tmp_path)
    assert json.loads(listed.stdout) == []


def test_visibility_timeout_within_the_time_limit_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[cluster]\nchunk_time_limit = 600\nvisibility_timeout = 600\n")
    done = rolecall("--config", str(config), "runs", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith(f"rolecall: {config}: cluster: visibility_timeout (600) must")
    assert "chunk_time_limit (600)" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_worker_without_a_scope_refuses_to_start(tmp_path: Path, db_path: Path) -> None:
    config = write_config(tmp_path / "w.toml", str(db_path), "redis://127.0.0.1:1/0")
    done = rolecall("--config", str(config), "worker", "--site", "a", cwd=tmp_path)
    assert done.returncode == 2
    assert "scope.allow: a worker probes only what its own [scope] allows" in done.stderr


def test_ctrl_c_stops_following_and_the_chunks_stay_queued(
    tmp_path: Path, broker: RedisServer, inventory: str
) -> None:
    config = write_config(tmp_path / "c.toml", inventory, broker.url)
    following = subprocess.Popen(
        [*ROLECALL, "--config", str(config), "scan", "subnet", "127.0.81.0/29", "--site", "a"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    store = Store.open(inventory)
    try:
        deadline = time.monotonic() + 60
        while not _queued(store):
            assert following.poll() is None, following.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        store.close()
    time.sleep(1.0)
    following.send_signal(signal.SIGINT)
    out, err = following.communicate(timeout=30)
    assert following.returncode == 130, err
    assert out == ""
    assert err.strip().splitlines()[-2:] == [
        "stopped following run 1: its chunks go on at site a; `rolecall runs` shows how far"
        " they got",
        "rolecall: interrupted",
    ]
    # Another process opening the inventory does not take the run for abandoned.
    run = _run(tmp_path, inventory)
    assert run["status"] == "running"
    assert [chunk["state"] for chunk in run["chunks"]] == ["queued", "queued"]


def _queued(store: Store) -> bool:
    """Whether run 1's chunks are recorded."""
    try:
        return bool(store.scan_chunks.state(1).chunks)
    except StoreError:
        return False


def test_a_chunk_meeting_a_database_gone_away_is_tried_again_later(
    tmp_path: Path,
    broker: RedisServer,
    postgres: PostgresServer,
    inventory: str,
    listeners: Callable[[str, int], Listener],
) -> None:
    listeners("127.0.81.1", 2525)
    config = write_config(tmp_path / "a.toml", inventory, broker.url, ["127.0.81.0/29"])
    store = Store.open(inventory)
    run_id, (chunk,) = store.scan_chunks.queue("127.0.81.0/30", "a", [("127.0.81.0/30", 4)])
    store.close()
    with running_workers((config, "a", tmp_path / "a.log")) as (worker,):
        postgres.halt()
        try:
            app = cluster_app(load_config(config)[0], inventory)
            app.send_task(
                TASK,
                kwargs={"chunk_id": chunk.id, "ports": "2525"},
                queue=site_queue("a"),
                task_id=chunk.task_id,
            )
            app.close()
            deadline = time.monotonic() + 60
            while "Retry in 30s" not in worker.text():
                assert time.monotonic() < deadline, worker.text()
                time.sleep(0.2)
        finally:
            postgres.resume()
        deadline = time.monotonic() + 120
        while (run := _run(tmp_path, inventory))["status"] == "running":
            assert time.monotonic() < deadline, worker.text()
            time.sleep(0.5)
    assert run["id"] == run_id
    assert run["status"] == "ok"
    assert [(c["state"], c["attempts"]) for c in run["chunks"]] == [("done", 1)]
    assert run["counts"]["open_ports"] == 1


def _send(config: Path, database: str, chunk_id: int, task_id: str, ports: str = "2525") -> None:
    """Queue one recorded chunk's task to site a, as a coordinator would."""
    app = cluster_app(load_config(config)[0], database)
    app.send_task(
        TASK,
        kwargs={"chunk_id": chunk_id, "ports": ports},
        queue=site_queue("a"),
        task_id=task_id,
    )
    app.close()


def _forge(database: str, chunk_id: int, **values: Any) -> None:
    """Edit a chunk's row in the inventory behind the coordinator's back."""
    table = SCAN_CHUNK_TABLE
    engine = create_engine(database)
    try:
        with engine.begin() as connection:
            connection.execute(update(table).where(table.c.id == chunk_id).values(**values))
    finally:
        engine.dispose()


def _wait_ended(cwd: Path, database: str, seconds: float) -> dict[str, Any]:
    """The only run once it ended."""
    deadline = time.monotonic() + seconds
    while (run := _run(cwd, database))["status"] == "running":
        assert time.monotonic() < deadline, run
        time.sleep(0.5)
    return run


def test_a_chunk_past_its_time_limit_fails_and_the_scan_returns(
    tmp_path: Path, broker: RedisServer, inventory: str
) -> None:
    silent = SilentListener("127.0.81.1", 2525)
    try:
        tiny = "chunk_addresses = 8\nchunk_time_limit = 2\nvisibility_timeout = 3\n"
        probes = "[probes]\nbanner_timeout = 20.0\nread_timeout = 20.0\n"
        site = write_config(
            tmp_path / "a.toml", inventory, broker.url, ["127.0.81.0/29"], probes, tiny
        )
        coordinator = write_config(tmp_path / "c.toml", inventory, broker.url, cluster=tiny)
        # A chunk its hard limit kills goes back to the queue instead of being acknowledged.
        app = cluster_app(load_config(site)[0], inventory)
        assert app.tasks[TASK].acks_on_timeout is False
        app.close()
        with running_workers((site, "a", tmp_path / "a.log")):
            started = time.monotonic()
            done = rolecall(
                "--config", str(coordinator), "scan", "subnet", "127.0.81.0/29",
                "--ports", "2525", "--probes", "smtp", "--site", "a", cwd=tmp_path,
            )  # fmt: skip
            took = time.monotonic() - started
        assert done.returncode == 1, done.stderr
        assert "ran past [cluster] chunk_time_limit (2 s)" in done.stderr
        assert done.stderr.strip().splitlines()[-1].startswith("rolecall: run 1 ended failed")
        assert took < 20
        run = _run(tmp_path, inventory)
        assert run["status"] == "failed"
        assert [c["state"] for c in run["chunks"]] == ["failed"]
    finally:
        silent.close()


def test_stale_chunks_are_swept_and_following_gives_up(
    tmp_path: Path, broker: RedisServer, inventory: str
) -> None:
    # Stale after 1 + 2 + 15 s unchanged; no worker ever serves site a here.
    tiny = "chunk_addresses = 4\nchunk_time_limit = 1\nvisibility_timeout = 2\n"
    config = write_config(tmp_path / "c.toml", inventory, broker.url, cluster=tiny)
    following = subprocess.Popen(
        [*ROLECALL, "--config", str(config), "scan", "subnet", "127.0.81.0/29", "--site", "a"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    store = Store.open(inventory)
    try:
        deadline = time.monotonic() + 60
        while not _queued(store):
            assert following.poll() is None, following.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        # Taken by a worker that is gone, and that the broker no longer holds.
        first = store.scan_chunks.state(1).chunks[0]
        assert store.scan_chunks.take(first.id, "gone.example:1") is not None
    finally:
        store.close()
    _, err = following.communicate(timeout=180)
    assert following.returncode == 1, err
    assert "chunk 0 (127.0.81.0/30) failed by worker gone.example:1: stale: running" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("rolecall: stopped following run 1: nothing changed for ")
    assert "(chunk 1 queued)" in last
    assert "`rolecall runs` shows its chunks" in last
    assert "Traceback" not in err
    text = rolecall("--db", inventory, "runs", cwd=tmp_path).stdout
    assert "  chunk 1 site a 127.0.81.4/30: queued worker - attempts 0: stale: queued since" in text
    assert "is a worker of site a running on this inventory" in text


def test_forged_chunk_rows_are_refused_before_nmap(
    tmp_path: Path, broker: RedisServer, inventory: str
) -> None:
    config = write_config(tmp_path / "a.toml", inventory, broker.url, ["127.0.0.0/8", "fd00::/48"])
    text = config.read_text().replace("[scan]\n", "[scan]\nmax_ipv6_sweep = 112\n")
    text = text.replace("[scope]\n", "[scope]\nmax_addresses = 256\n")
    config.write_text(text)
    store = Store.open(inventory)
    pieces = [("127.0.81.0/30", 4)] * 3
    run_id, chunks = store.scan_chunks.queue("127.0.81.0/28", "a", pieces)
    store.close()
    _forge(inventory, chunks[0].id, targets="127.0.0.0/8", addresses=4)
    _forge(inventory, chunks[1].id, targets="fd00::/64", addresses=4)
    _forge(inventory, chunks[2].id, addresses=2)
    with running_workers((config, "a", tmp_path / "a.log")) as (worker,):
        for chunk in chunks:
            _send(config, inventory, chunk.id, chunk.task_id)
        run = _wait_ended(tmp_path, inventory, 60)
    assert run["id"] == run_id
    assert run["status"] == "failed"
    assert [(c["state"], c["attempts"]) for c in run["chunks"]] == [("refused", 0)] * 3
    errors = [c["error"] for c in run["chunks"]]
    assert "16777216 addresses, more than scope.max_addresses (256)" in errors[0]
    assert "fd00::/64 is wider than /112 (scan.max_ipv6_sweep)" in errors[1]
    assert "its targets hold 4 addresses, its record says 2" in errors[2]
    assert "scanning" not in worker.text()


def test_an_unknown_broker_scheme_is_refused_at_config_load(tmp_path: Path, db_path: Path) -> None:
    config = write_config(
        tmp_path / "c.toml", str(db_path), "bogus://:pw@127.0.0.1/0", ["127.0.81.0/29"]
    )
    for command in (["scan", "subnet", "127.0.81.0/29", "--site", "a"], ["worker", "--site", "a"]):
        done = rolecall("--config", str(config), *command, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith(f"rolecall: {config}: cluster.broker: 'bogus' is no broker scheme")
        assert "redis://" in line


def test_a_worker_whose_broker_is_down_says_so_and_stops(tmp_path: Path, db_path: Path) -> None:
    down = f"redis://:hunter2@127.0.0.1:{free_port('127.0.0.1')}/0"
    config = write_config(tmp_path / "w.toml", str(db_path), down, ["127.0.81.0/29"])
    done = rolecall("--config", str(config), "worker", "--site", "a", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("rolecall: cannot reach the broker redis://:**@127.0.0.1:")
    assert "hunter2" not in done.stderr


def test_database_errors_after_taking_a_chunk_do_not_count_as_dead_workers(
    tmp_path: Path, broker: RedisServer, postgres: PostgresServer, inventory: str
) -> None:
    silent = SilentListener("127.0.81.1", 2525)
    try:
        # Long enough that the halt below lands while the probe waits, even on a busy machine.
        probes = "[probes]\nbanner_timeout = 10.0\nread_timeout = 10.0\n"
        config = write_config(tmp_path / "a.toml", inventory, broker.url, ["127.0.81.0/29"], probes)
        store = Store.open(inventory)
        run_id, (chunk,) = store.scan_chunks.queue("127.0.81.0/30", "a", [("127.0.81.0/30", 4)])
        store.close()
        # Taken twice before by workers that died: one more death and it is failed.
        _forge(inventory, chunk.id, attempts=2)
        with running_workers((config, "a", tmp_path / "a.log")) as (worker,):
            _send(config, inventory, chunk.id, chunk.task_id)
            deadline = time.monotonic() + 60
            while "127.0.81.0/30): scanning" not in worker.text():
                assert time.monotonic() < deadline, worker.text()
                time.sleep(0.1)
            # Gone while the SMTP probe waits for its banner: storing the chunk fails.
            postgres.halt()
            try:
                while "Retry in 30s" not in worker.text():
                    assert time.monotonic() < deadline, worker.text()
                    time.sleep(0.2)
            finally:
                postgres.resume()
            run = _wait_ended(tmp_path, inventory, 120)
        assert run["id"] == run_id
        assert run["status"] == "ok", run
        # Done, not failed as "its workers stopped": the retry after the database error is
        # not counted as a death (whether it counts as a take depends on the worker taking it).
        ((state, attempts),) = [(c["state"], c["attempts"]) for c in run["chunks"]]
        assert (state, attempts >= 3) == ("done", True)
    finally:
        silent.close()
