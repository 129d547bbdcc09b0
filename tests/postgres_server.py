"""A throwaway PostgreSQL cluster on loopback: initdb in a temporary directory, never a service.

The suite (tests/conftest.py) and the benchmarks start one with `PostgresServer.start()`
and hand each test a database of its own. As root the server runs as the `postgres`
user Debian's package creates (PostgreSQL refuses to run as root); otherwise as the
caller. Durability is switched off: a test cluster is thrown away, and fsync per commit
would make the PostgreSQL half of the suite several times slower than SQLite's.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

START_SECONDS = 60.0


class PostgresMissingError(RuntimeError):
    """PostgreSQL's server programs are not installed (`.ci/run` installs them)."""


def server_bin() -> Path:
    """The directory holding initdb and pg_ctl of the newest installed PostgreSQL."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=_major)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise PostgresMissingError(
            "PostgreSQL is not installed: run `bash .ci/run` (it installs Debian's postgresql)"
        )
    return Path(initdb).parent


def _major(initdb: Path) -> int:
    """The major version in /usr/lib/postgresql/N/bin/initdb (0 if not a number)."""
    name = initdb.parent.parent.name
    return int(name) if name.isdigit() else 0


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _run_as() -> pwd.struct_passwd | None:
    """The account to run the server as: postgres (or nobody) as root, else None (the caller)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PostgresMissingError("running as root and there is no postgres or nobody account")


@dataclass
class PostgresServer:
    """One running test cluster: where it lives, its port, and how to reach it."""

    directory: Path
    port: int
    user: str
    bin: Path
    account: pwd.struct_passwd | None

    @classmethod
    def start(cls) -> PostgresServer:
        """initdb a new cluster in a temporary directory and start it on 127.0.0.1."""
        bin_dir = server_bin()
        account = _run_as()
        directory = Path(tempfile.mkdtemp(prefix="rolecall-pg-"))
        if account is not None:
            os.chown(directory, account.pw_uid, account.pw_gid)
        user = account.pw_name if account is not None else pwd.getpwuid(os.geteuid()).pw_name
        server = cls(directory, _free_port(), user, bin_dir, account)
        server._initdb()
        server.resume()
        return server

    def _command(self, program: str, *args: str) -> list[str]:
        """argv running one of the server's programs as its account."""
        argv = [str(self.bin / program), *args]
        if self.account is not None:
            return ["runuser", "-u", self.account.pw_name, "--", *argv]
        return argv

    def _initdb(self) -> None:
        """Create the cluster: trust on loopback only, UTF-8, no password."""
        subprocess.run(
            self._command(
                "initdb",
                "-D",
                str(self.directory / "data"),
                "-U",
                self.user,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ),
            check=True,
            capture_output=True,
            timeout=START_SECONDS,
        )

    def _options(self) -> str:
        """Server settings: loopback TCP, socket in its own directory, durability off."""
        return " ".join(
            [
                "-c listen_addresses=127.0.0.1",
                f"-p {self.port}",
                f"-c unix_socket_directories={self.directory}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
                "-c shared_buffers=128MB",
            ]
        )

    def _pg_ctl(self, *args: str) -> None:
        """Run pg_ctl on this cluster's data directory."""
        subprocess.run(
            self._command("pg_ctl", "-D", str(self.directory / "data"), *args),
            check=True,
            capture_output=True,
            timeout=START_SECONDS,
        )

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of one database of this cluster."""
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit connection to the maintenance database."""
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=self.user, dbname="postgres", autocommit=True
        )

    def create_database(self) -> str:
        """Create a new empty database and return its URL."""
        name = "t_" + uuid.uuid4().hex[:16]
        with self._admin() as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by create_database, ending its sessions first."""
        name = url.rsplit("/", 1)[1]
        with self._admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory."""
        try:
            self._pg_ctl("stop", "-m", "fast", "-w")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def halt(self) -> None:
        """Stop the server at once, keeping its data (a database that went away)."""
        self._pg_ctl("stop", "-m", "immediate", "-w")

    def resume(self) -> None:
        """Start a halted server again on the same port and data."""
        self._pg_ctl(
            "start",
            "-w",
            "-t",
            str(int(START_SECONDS)),
            "-l",
            str(self.directory / "server.log"),
            "-o",
            self._options(),
        )
