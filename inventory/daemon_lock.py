"""One daemon per inventory: a lock file beside SQLite, an advisory lock in PostgreSQL."""

from __future__ import annotations

import fcntl
import os
import zlib
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from rolecall.inventory.database_errors import database_name, reason
from rolecall.inventory.errors import StoreError


class DaemonLock:
    """Held while a daemon runs; a second daemon on the same database cannot take it."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
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
        return Path(database).with_name(Path(database).name + ".daemon.lock")

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
                f"another rolecall daemon (pid {holder}) already runs on {database}"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle

    def _lock_advisory(self) -> None:
        """A session-level pg_try_advisory_lock held on a dedicated connection."""
        key = zlib.crc32(b"rolecall-daemon")
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
            raise StoreError(f"another rolecall daemon already runs on {name}")
        self._connection = connection

    def release(self) -> None:
        """Let go of the lock (also released by the kernel or server if the process dies)."""
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None
