"""On PostgreSQL the store's sessions run in UTC whatever the server's or database's zone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from rolecall.inventory.derivation.engine import derive
from rolecall.inventory.settings import DeriveSettings
from rolecall.inventory.store import Store
from rolecall.probes.records import Observation
from tests.postgres_server import PostgresServer

# A quarter to midnight in UTC: a quarter past five the next morning in Kolkata.
SEEN = datetime(2026, 11, 23, 23, 45, 10, 123456, tzinfo=UTC)


@pytest.fixture
def url(postgres: PostgresServer) -> Iterator[str]:
    """A PostgreSQL inventory whose database puts sessions in Asia/Kolkata (UTC+05:30)."""
    created = postgres.create_database()
    name = created.rsplit("/", 1)[1]
    with psycopg.connect(
        host="127.0.0.1", port=postgres.port, user=postgres.user, dbname="postgres", autocommit=True
    ) as admin:
        admin.execute(f"ALTER DATABASE \"{name}\" SET TimeZone = 'Asia/Kolkata'")
    yield created
    postgres.drop_database(created)


def test_sessions_read_and_write_utc_in_a_database_set_to_another_zone(url: str) -> None:
    store = Store.open(url)
    try:
        with store.writer() as writer:
            writer.add(Observation("10.9.0.7", "dns-query", "zeek", SEEN, 53, "udp", "a.test"))
        with store.transaction("test") as connection:
            zone = connection.exec_driver_sql("SHOW TimeZone").scalar()
            assert zone == "UTC"
            derive(connection, DeriveSettings())
            seen = connection.exec_driver_sql(
                "SELECT first_seen, last_seen FROM role"
                " WHERE address = '10.9.0.7' AND role = 'dns-client'"
            ).one()
        # Read back as Python's own UTC, to the microsecond, however the database is set.
        assert tuple(seen) == (SEEN, SEEN)
        assert all(moment.tzinfo is UTC for moment in seen)
    finally:
        store.close()
