"""On PostgreSQL a derivation's sorts and hashes get enough memory not to spill to disk."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection

from rolecall.inventory.database import ANALYTIC_WORK_MEM_KB
from rolecall.inventory.derivation.engine import derive
from rolecall.inventory.store import Store
from rolecall.probes.records import SmtpTransaction
from tests.postgres_server import PostgresServer

SEEN = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


@pytest.fixture
def url(postgres: PostgresServer) -> Iterator[str]:
    """A PostgreSQL inventory holding one mail transaction."""
    created = postgres.create_database()
    opened = Store.open(created)
    with opened.writer() as writer:
        writer.add(SmtpTransaction(SEEN, "10.9.0.5", 40001, "198.51.100.25", 25, "zeek"))
    opened.close()
    yield created
    postgres.drop_database(created)


def _work_mem(connection: Connection) -> int:
    """The transaction's work_mem in kB."""
    found = connection.exec_driver_sql(
        "SELECT setting::bigint FROM pg_settings WHERE name = 'work_mem'"
    ).scalar()
    return int(found or 0)


def _derive_seeing_work_mem(monkeypatch: pytest.MonkeyPatch, url: str) -> tuple[int, int]:
    """work_mem (kB) inside a derivation, and in a transaction after it."""
    seen: list[int] = []

    def spy(connection: Connection, *args: Any, **kwargs: Any) -> Any:
        seen.append(_work_mem(connection))
        return derive(connection, *args, **kwargs)

    monkeypatch.setattr("rolecall.inventory.store.derive", spy)
    opened = Store.open(url)
    summary = opened.derive()
    with opened.read("read work_mem") as connection:
        after = _work_mem(connection)
    opened.close()
    assert summary.roles > 0
    assert len(seen) == 1
    return seen[0], after


def test_a_derivation_raises_work_mem_for_its_own_transaction_only(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    during, after = _derive_seeing_work_mem(monkeypatch, url)
    assert during == ANALYTIC_WORK_MEM_KB
    assert after == 4096  # the server's default, untouched outside the derivation


def test_a_server_set_higher_keeps_its_own_work_mem(
    monkeypatch: pytest.MonkeyPatch, postgres: PostgresServer, url: str
) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(postgres.url().replace("+psycopg", ""), autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE \"{name}\" SET work_mem = '256MB'")
    during, after = _derive_seeing_work_mem(monkeypatch, url)
    assert during == after == 256 * 1024
