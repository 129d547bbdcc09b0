"""One daemon per inventory and sensor: a lock file (SQLite) or an advisory lock (PostgreSQL)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from rolecall.inventory.database_errors import database_name, reason
from rolecall.inventory.errors import StoreError

_KEY = 3493682195  # zlib.crc32(b"rolecall-daemon"), the key of releases before it was named here
"""The daemon's advisory lock key (PostgreSQL scopes advisory locks to one database)."""


def sensor_key(sensor: str) -> int:
    """The advisory lock key of a sensor's daemon: a stable 64-bit hash of its name.

    Keys are signed 64-bit (bigint): apart from the central key and from each other
    sensor's but by a collision of 64-bit hashes.
    """
    digest = hashlib.blake2b(f"rolecall-sensor-daemon:{sensor}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


class DaemonLock:
    """Held while a daemon runs; a second daemon on the same database cannot take it.

    With a sensor, the lock of that sensor's daemon: one per sensor, beside the central one.
    """

    def __init__(self, engine: Engine, sensor: str = "") -> None:
        self._engine = engine
        self._sensor = sensor
        self._key = sensor_key(sensor) if sensor else _KEY
        self._which = f"daemon for sensor {sensor}" if sensor else "daemon"
        self._file: IO[str] | None = None
        self._connection: Connection | None = None

    def acquire(self) -> None:
        """Take the lock or raise StoreError naming the database and the holder."""
        if self._engine.dialect.name == "sqlite":
            self._lock_file()
        else:
            self._lock_advisory()

    def _lock_path(self) -> Path:
        """The lock file beside the SQLite database."""
        database = self._engine.url.database or ""
        if not database or database == ":memory:":
            raise StoreError("the daemon needs an SQLite file or PostgreSQL, not :memory:")
        # Sensor names are letters, digits, "_", "." and "-": never a path of their own.
        suffix = f".sensor-{self._sensor}.daemon.lock" if self._sensor else ".daemon.lock"
        return Path(database).with_name(Path(database).name + suffix)

    def _lock_file(self) -> None:
        """An exclusive flock on the lock file; the kernel drops it if the process dies."""
        path = self._lock_path()
        try:
            handle = path.open("a+", encoding="utf-8")
        except OSError as exc:
            raise StoreError(
                f"cannot create the daemon's lock file {path}: {exc.strerror}"
            ) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            database = self._engine.url.database
            raise StoreError(
                f"another rolecall {self._which} (pid {holder}) already runs on {database}"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle

    def _lock_advisory(self) -> None:
        """A session-level pg_try_advisory_lock held on a dedicated connection."""
        key = self._key
        name = database_name(self._engine.url)
        try:
            connection = self._engine.connect()
            taken = connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": key}
            ).scalar()
            connection.commit()
        except DBAPIError as exc:
            raise StoreError(f"cannot lock database {name}: {reason(exc)}") from None
        if not taken:
            connection.close()
            raise StoreError(f"another rolecall {self._which} already runs on {name}")
        self._connection = connection

    def release(self) -> None:
        """Let go of the lock (also released by the kernel or server if the process dies)."""
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
        if self._connection is not None:
            # Unlocked here, as the server ends a session asynchronously; and the session
            # is not handed back to the pool, where it would live on.
            with contextlib.suppress(DBAPIError):
                self._connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": self._key}
                )
                self._connection.commit()
            self._connection.invalidate()
            self._connection.close()
            self._connection = None
