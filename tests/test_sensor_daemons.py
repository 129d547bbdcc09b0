"""`rolecall run --sensor NAME`: a daemon per sensor beside the central one, on one inventory."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.daemon_helpers import Daemon, daemon, event_named, rolecall
from tests.data_paths import CONFORMANCE
from tests.postgres_server import PostgresServer

# Two real captures with different evidence: one sensor sees mail, the other a SOCKS proxy.
CAPTURES = {
    "a": CONFORMANCE / "smtp-basic" / "trace.pcap",
    "b": CONFORMANCE / "socks-trace1" / "trace.pcap",
}


def _config(tmp_path: Path, name: str) -> Path:
    """A config of one daemon: its own JSON log, files settled at once."""
    path = tmp_path / f"{name}.toml"
    log = tmp_path / f"{name}.log"
    path.write_text(f'[daemon]\nlog_file = "{log}"\nwatch_settle = 0\n', encoding="utf-8")
    return path


def _drop(tmp_path: Path, sensor: str) -> Path:
    """A sensor's drop folder holding its capture, settled long ago."""
    folder = tmp_path / f"drop-{sensor}"
    folder.mkdir()
    target = folder / f"sensor-{sensor}.pcap"
    shutil.copyfile(CAPTURES[sensor], target)
    past = time.time() - 600
    os.utime(target, (past, past))
    return folder


def _start(stack: ExitStack, tmp_path: Path, name: str, database: str, *run_args: str) -> Daemon:
    """Start a daemon (`run RUN_ARGS`) with its own config and log, stopped with the stack."""
    return stack.enter_context(
        daemon(
            "--config",
            str(_config(tmp_path, name)),
            "--db",
            database,
            cwd=tmp_path,
            log=tmp_path / f"{name}.log",
            run_args=run_args,
        )
    )


def _jobs_started(running: Daemon) -> set[str]:
    """The ids of the jobs a daemon started."""
    return {str(found["job"]) for found in running.events() if found["event"] == "job-start"}


@pytest.fixture
def shared(postgres: PostgresServer) -> Iterator[str]:
    """One fresh PostgreSQL inventory for every daemon of a test."""
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)


def test_each_sensor_daemon_ingests_its_own_folder_once_beside_the_central_one(
    tmp_path: Path, shared: str
) -> None:
    drops = {sensor: _drop(tmp_path, sensor) for sensor in CAPTURES}
    for sensor, folder in drops.items():
        added = rolecall(
            "--db",
            shared,
            "schedule",
            "add",
            "ingest",
            "--watch",
            str(folder),
            "--sensor",
            sensor,
            "--every",
            "1",
            "--id",
            f"watch-{sensor}",
            cwd=tmp_path,
        )
        assert added.returncode == 0, added.stderr
    listed = rolecall("--db", shared, "schedule", "list", "--format", "json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert {row["id"]: row["sensor"] for row in json.loads(listed.stdout)} == {
        "watch-a": "a",
        "watch-b": "b",
    }
    text_list = rolecall("--db", shared, "schedule", "list", cwd=tmp_path).stdout
    assert f"watch {drops['a']} sensor a\t" in text_list

    with ExitStack() as stack:
        central = _start(stack, tmp_path, "central", shared)
        started = central.wait_for(event_named("daemon-start"))
        assert started["sensor"] == ""
        assert not any(line.startswith("watch-") for line in started["schedules"])
        sensors = {
            sensor: _start(stack, tmp_path, sensor, shared, "--sensor", sensor)
            for sensor in CAPTURES
        }
        for sensor, running in sensors.items():
            begun = running.wait_for(event_named("daemon-start"))
            assert begun["sensor"] == sensor
            assert begun["config_schedules"] == []
            assert [line.split()[0] for line in begun["schedules"]] == [f"watch-{sensor}"]
        for sensor, running in sensors.items():
            done = running.wait_for(event_named("job-ok", job=f"watch-{sensor}"), timeout=90)
            assert f"sensor-{sensor}.pcap: done" in done["outcome"]

        twin = rolecall(
            "--config",
            str(_config(tmp_path, "twin")),
            "--db",
            shared,
            "run",
            "--sensor",
            "a",
            cwd=tmp_path,
        )
        assert twin.returncode == 2
        assert "another rolecall daemon for sensor a already runs on" in twin.stderr
        assert "Traceback" not in twin.stderr

        # Give the central daemon several syncs and the sensors several more looks.
        time.sleep(3)
        pids = {name: running.proc.pid for name, running in {**sensors, "": central}.items()}
        for name, running in {**sensors, "": central}.items():
            assert running.stop() == 0, name
            assert running.wait_for(event_named("daemon-stop"))["clean"] is True

    # Only its own watch (no prune, no other schedule) ran in a sensor's daemon; none in the
    # central one, which pruned.
    assert _jobs_started(sensors["a"]) == {"watch-a"}
    assert _jobs_started(sensors["b"]) == {"watch-b"}
    assert not any(job.startswith("watch-") for job in _jobs_started(central))
    for sensor, folder in drops.items():
        assert [path.name for path in (folder / "done").iterdir()] == [f"sensor-{sensor}.pcap"]
        assert not list(folder.glob("*.pcap"))

    engine = create_engine(shared)
    try:
        with engine.connect() as connection:
            runs = connection.execute(
                text("SELECT kind, status, target, owner_pid FROM run ORDER BY id")
            ).all()
            mails = connection.execute(text("SELECT count(*) FROM smtp")).scalar_one()
            proxies = connection.execute(text("SELECT count(*) FROM socks")).scalar_one()
    finally:
        engine.dispose()
    ingests = [run for run in runs if run.kind == "ingest pcap"]
    assert sorted((run.status, Path(run.target).name, run.owner_pid) for run in ingests) == [
        ("ok", "sensor-a.pcap", pids["a"]),
        ("ok", "sensor-b.pcap", pids["b"]),
    ]
    watches = {run.owner_pid for run in runs if run.kind == "scheduled ingest"}
    assert watches == {pids["a"], pids["b"]}
    assert pids[""] not in {run.owner_pid for run in runs if "ingest" in run.kind}
    assert mails > 0
    assert proxies > 0


def test_sqlite_keeps_a_lock_file_per_sensor(tmp_path: Path) -> None:
    database = str(tmp_path / "inventory.db")
    with ExitStack() as stack:
        first = _start(stack, tmp_path, "a", database, "--sensor", "a")
        first.wait_for(event_named("daemon-start"))
        lock = tmp_path / "inventory.db.sensor-a.daemon.lock"
        assert lock.read_text().strip() == str(first.proc.pid)

        second = rolecall("--db", database, "run", "--sensor", "a", cwd=tmp_path)
        assert second.returncode == 2
        assert f"another rolecall daemon for sensor a (pid {first.proc.pid})" in second.stderr

        others = [
            _start(stack, tmp_path, "b", database, "--sensor", "b"),
            _start(stack, tmp_path, "central", database),
        ]
        for running in others:
            running.wait_for(event_named("daemon-start"))
        assert (tmp_path / "inventory.db.sensor-b.daemon.lock").exists()
        assert (tmp_path / "inventory.db.daemon.lock").exists()
        for running in (first, *others):
            assert running.stop() == 0

        # Once a sensor's daemon stopped, its lock is free again.
        again = _start(stack, tmp_path, "a-again", database, "--sensor", "a")
        again.wait_for(event_named("daemon-start"))
        assert again.stop() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("run", "--sensor", "../x"), "--sensor '../x': a sensor name is letters"),
        (
            ("schedule", "add", "ingest", "--watch", "spool", "--sensor", "a"),
            "--watch spool: give the folder's absolute path on the sensor",
        ),
        (
            ("schedule", "add", "ingest", "--watch", "/spool", "--sensor", "a b"),
            "--sensor 'a b': a sensor name is letters",
        ),
    ],
)
def test_bad_sensor_input_is_one_sentence(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = rolecall("--db", str(tmp_path / "inventory.db"), *args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_only_ingest_schedules_run_on_a_sensor(tmp_path: Path) -> None:
    config = tmp_path / "rolecall.toml"
    config.write_text(
        '[[schedule]]\nid = "mail"\njob = "report-email"\nevery = 60\nsensor = "a"\n',
        encoding="utf-8",
    )
    db = str(tmp_path / "inventory.db")
    result = rolecall("--config", str(config), "--db", db, "run", cwd=tmp_path)
    assert result.returncode == 2
    assert "schedule mail: only an ingest job runs on a sensor" in result.stderr
    scan = rolecall(
        "--db",
        db,
        "schedule",
        "add",
        "scan",
        "--subnet",
        "127.0.0.1",
        "--sensor",
        "a",
        cwd=tmp_path,
    )
    assert scan.returncode == 2
    assert "No such option: --sensor" in scan.stderr
