"""The benchmarks' inventory on either backend, and bulk writes of generated rows into it.

`--database sqlite` (the default) keeps the inventory in a file in a temporary
directory; `--database postgresql` starts a throwaway PostgreSQL cluster
(tests/postgres_server.py: initdb in a temporary directory, loopback only, durability
off) and uses one database of it. A benchmark generates its rows once, as tuples,
and a `BulkWriter` puts them into either: sqlite3's executemany, or PostgreSQL's
COPY. Statements are written with `?` placeholders and run as they are on SQLite.

Run the benchmarks from the repository root (`python -m bench.NAME`): the
PostgreSQL cluster comes from the test suite's package.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import psycopg
from psycopg import sql
from sqlalchemy import make_url

BACKENDS = ("sqlite", "postgresql")


def add_database_option(parser: argparse.ArgumentParser) -> None:
    """Give a benchmark's parser `--database sqlite|postgresql` (default sqlite)."""
    parser.add_argument(
        "--database",
        choices=BACKENDS,
        default="sqlite",
        help="backend of the generated inventory (postgresql: a throwaway local cluster)",
    )


@contextlib.contextmanager
def inventory(backend: str, directory: Path) -> Iterator[str]:
    """A new empty inventory's `--db` target: a file in directory, or a throwaway server's URL."""
    if backend == "sqlite":
        yield str(directory / "inventory.db")
        return
    from tests.postgres_server import PostgresServer  # noqa: PLC0415 - only PostgreSQL needs it

    server = PostgresServer.start()
    try:
        yield server.create_database()
    finally:
        server.stop()


def settle() -> None:
    """Flush what was just written (the generated inventory, the last step's changes) to disk.

    A generated inventory is gigabytes of dirty pages: the kernel writes them back for a
    minute after, and throttles any process that writes meanwhile, so without this the
    step timed next would pay for the generator's writes (as pcap_vs_tshark.warm avoids).
    """
    os.sync()


def load_note() -> str:
    """The machine's load averages, printed beside the figures they may have slowed."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


class BulkWriter(Protocol):
    """Writes generated rows and runs plain statements in one transaction."""

    def insert(
        self,
        table: str,
        columns: Sequence[str],
        rows: Iterable[Sequence[object]],
        *,
        skip_duplicates: bool = False,
    ) -> None:
        """Insert rows; with skip_duplicates, rows that break a unique key are left out."""

    def execute(
        self, statement: str, parameters: Sequence[object] = ()
    ) -> list[tuple[object, ...]]:
        """Run one statement (with ? placeholders) and return its rows."""

    def commit(self) -> None:
        """Commit what was written, refresh the planner's statistics and close."""


class SqliteWriter:
    """Bulk writes through sqlite3, unsynchronised: a benchmark's file is thrown away."""

    def __init__(self, path: str) -> None:
        """Open the SQLite file at path."""
        self.connection = sqlite3.connect(path)
        self.connection.execute("PRAGMA synchronous=OFF")

    def insert(
        self,
        table: str,
        columns: Sequence[str],
        rows: Iterable[Sequence[object]],
        *,
        skip_duplicates: bool = False,
    ) -> None:
        """executemany of one INSERT (OR IGNORE)."""
        verb = "INSERT OR IGNORE" if skip_duplicates else "INSERT"
        self.connection.executemany(
            f"{verb} INTO {table} ({_names(columns)}) VALUES ({','.join('?' * len(columns))})",
            rows,
        )

    def execute(
        self, statement: str, parameters: Sequence[object] = ()
    ) -> list[tuple[object, ...]]:
        """Run one statement as it is."""
        return self.connection.execute(statement, parameters).fetchall()

    def commit(self) -> None:
        """Commit and close (SQLite's planner needs no statistics refresh here)."""
        self.connection.commit()
        self.connection.close()


class PostgresWriter:
    """Bulk writes through PostgreSQL's COPY, in a UTC session (the bench's times are UTC)."""

    def __init__(self, url: str) -> None:
        """Connect to the database of an SQLAlchemy postgresql+psycopg URL."""
        self.url = url
        self.connection = psycopg.connect(_conninfo(url), options="-c TimeZone=UTC")

    def insert(
        self,
        table: str,
        columns: Sequence[str],
        rows: Iterable[Sequence[object]],
        *,
        skip_duplicates: bool = False,
    ) -> None:
        """COPY the rows in; with skip_duplicates through a staging table and ON CONFLICT."""
        names = sql.SQL(", ").join(map(sql.Identifier, columns))
        target = sql.Identifier(table)
        if skip_duplicates:
            # COPY has no ON CONFLICT: the rows land in an empty copy of the table first.
            target = sql.Identifier(f"staged_{table}")
            self.connection.execute(
                sql.SQL("CREATE TEMPORARY TABLE {} (LIKE {} INCLUDING DEFAULTS)").format(
                    target, sql.Identifier(table)
                )
            )
        copying = sql.SQL("COPY {} ({}) FROM STDIN").format(target, names)
        with self.connection.cursor().copy(copying) as copy:
            for row in rows:
                copy.write_row(row)
        if skip_duplicates:
            self.connection.execute(
                sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT DO NOTHING").format(
                    sql.Identifier(table), names, names, target
                )
            )
            self.connection.execute(sql.SQL("DROP TABLE {}").format(target))

    def execute(
        self, statement: str, parameters: Sequence[object] = ()
    ) -> list[tuple[object, ...]]:
        """Run one statement, its ? placeholders made psycopg's."""
        cursor = self.connection.execute(statement.replace("?", "%s"), parameters)
        return cursor.fetchall() if cursor.description else []

    def commit(self) -> None:
        """Commit, close, and refresh the planner's statistics (see analyzed)."""
        self.connection.commit()
        self.connection.close()
        analyzed(self.url)


def analyzed(target: str) -> None:
    """VACUUM ANALYZE a PostgreSQL inventory after a bulk load, as autovacuum soon would.

    Without it the first queries would be planned on the statistics of empty tables,
    which no inventory that grew by ingests has. SQLite needs nothing here.
    """
    if "://" not in target:
        return
    with psycopg.connect(_conninfo(target), autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")


def _conninfo(url: str) -> str:
    """psycopg's connection string for an SQLAlchemy postgresql+psycopg URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def shell_command(target: str, sql: str) -> list[str]:
    """The database's own shell running sql on the inventory at target (sqlite3 or psql)."""
    if "://" in target:
        return ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", _conninfo(target), "-c", sql]
    return ["sqlite3", target, sql]


def bulk_writer(target: str) -> BulkWriter:
    """A writer for the inventory at target (an SQLite path or a PostgreSQL URL)."""
    if "://" in target:
        return PostgresWriter(target)
    return SqliteWriter(target)


def _names(columns: Sequence[str]) -> str:
    """Column names quoted for SQL ("from" is a keyword)."""
    return ", ".join(f'"{column}"' for column in columns)
