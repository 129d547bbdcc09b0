"""Site workers as `rolecall worker` subprocesses, their configs, and what an inventory holds."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from rolecall.inventory.store import Store
from rolecall.inventory.tables import OBSERVATION_TABLE
from tests.daemon_helpers import ROLECALL, rolecall

READY_SECONDS = 60.0


def write_config(
    path: Path,
    database: str,
    broker: str,
    allow: Sequence[str] = (),
    extra: str = "",
    cluster: str = "chunk_addresses = 4\n",
) -> Path:
    """A config file: the inventory, the broker, small chunks, no reverse names, a scope."""
    scope = f"[scope]\nallow = {json.dumps(list(allow))}\n" if allow else ""
    path.write_text(
        f"[database]\nurl = {json.dumps(database)}\n{scope}"
        f"[cluster]\nbroker = {json.dumps(broker)}\n{cluster}"
        f"[scan]\nresolve_names = false\n{extra}",
        encoding="utf-8",
    )
    return path


@dataclass
class Worker:
    """A `rolecall worker` in a process group of its own, logging to a file."""

    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        """What the worker logged so far."""
        return self.log.read_text(encoding="utf-8", errors="replace")

    def kill_group(self) -> None:
        """SIGKILL the worker and every process it started (its process group)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> int:
        """SIGTERM (a warm shutdown); its exit status. Killed if it does not stop in time."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                return self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.kill_group()
        return self.process.wait()


def start_worker(config: Path, site: str, log: Path, *extra: str) -> Worker:
    """Start `rolecall --config CONFIG worker --site SITE` and wait until it serves its queue."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*ROLECALL, "--config", str(config), "worker", "--site", site, *extra],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=config.parent,
            start_new_session=True,
        )
    worker = Worker(process, log)
    deadline = time.monotonic() + READY_SECONDS
    while " ready." not in worker.text():
        if process.poll() is not None or time.monotonic() > deadline:
            worker.stop()
            raise AssertionError(f"worker for site {site} did not start:\n{worker.text()}")
        time.sleep(0.1)
    return worker


@contextmanager
def running_workers(*specs: tuple[Path, str, Path]) -> Iterator[list[Worker]]:
    """Workers (config, site, log) running for the block, then stopped by PID."""
    started: list[Worker] = []
    try:
        for config, site, log in specs:
            started.append(start_worker(config, site, log))
        yield started
    finally:
        for worker in started:
            if worker.process.poll() is None:
                worker.stop()


def exported(cwd: Path, database: str, what: str) -> list[dict[str, Any]]:
    """An export of the inventory as JSON objects."""
    done = rolecall("--db", database, "export", what, "--format", "json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def facts(cwd: Path, database: str) -> dict[str, Any]:
    """What an inventory holds, without times: assets, services, observations and counts."""
    untimed = {"first_seen", "last_seen"}
    inventory = sorted(
        json.dumps({k: v for k, v in row.items() if k not in untimed}, sort_keys=True)
        for row in exported(cwd, database, "inventory")
    )
    services = sorted(
        json.dumps({k: v for k, v in row.items() if k not in untimed}, sort_keys=True)
        for row in exported(cwd, database, "services")
    )
    table = OBSERVATION_TABLE
    store = Store.open(database)
    try:
        with store.read("read observations") as connection:
            observations = sorted(
                tuple(row)
                for row in connection.execute(
                    select(
                        table.c.address,
                        table.c.kind,
                        table.c.source,
                        table.c.port,
                        table.c.transport,
                        table.c.value_key,
                        table.c.count,
                    )
                )
            )
    finally:
        store.close()
    return {"inventory": inventory, "services": services, "observations": observations}


@dataclass
class SilentListener:
    """A TCP listener that accepts and then says nothing, holding each connection open."""

    address: str
    port: int
    accepted: int = 0
    _sock: socket.socket = field(init=False)
    _held: list[socket.socket] = field(default_factory=list, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)

    def __post_init__(self) -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((self.address, self.port))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        """Accept until stopped; keep every connection open and silent."""
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self._held.append(conn)

    def close(self) -> None:
        """Stop and close everything."""
        self._stop.set()
        self._thread.join()
        for conn in self._held:
            conn.close()
        self._sock.close()
