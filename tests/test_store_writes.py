"""The store's batched upserts: merge rules hold across batches and across transactions."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Table, select

from rolecall.inventory.errors import StoreError
from rolecall.inventory.store import Store
from rolecall.inventory.tables import (
    ASSET_SOURCE_TABLE,
    ASSET_TABLE,
    FLOW_TABLE,
    OBSERVATION_TABLE,
    ROLE_TABLE,
    SERVICE_TABLE,
)
from rolecall.probes.records import Flow, Observation, Service

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def _rows(store: Store, table: Table) -> list[Any]:
    """Every stored row of a table."""
    with store.read("read rows") as conn:
        return list(conn.execute(select(table)).all())


def _write(store: Store, records: Sequence[Observation | Service | Flow], batch: int) -> None:
    """Write records in one transaction with the given batch size."""
    with store.writer(batch_size=batch) as writer:
        writer.add_all(records)


def test_merges_hold_within_and_across_batches(database: str) -> None:
    store = Store.open(database)
    obs = [
        Observation("192.0.2.7", "protocol", "probe", T0 + timedelta(hours=h), 25, "tcp", "smtp")
        for h in range(5)
    ]
    flows = [
        Flow("192.0.2.7", "198.51.100.1", 25, "tcp", date(2026, 11, 23), "pcap",
             T0 + timedelta(minutes=m), T0 + timedelta(minutes=m + 1), 1, 10, 1000, m == 3)
        for m in range(5)
    ]  # fmt: skip
    rich = Service("192.0.2.7", 25, "tcp", "probe", T0, "smtp", "Postfix", "3.7", "", "220 mx")
    sparse = Service("192.0.2.7", 25, "tcp", "probe", T0 + timedelta(days=1), "smtp")
    # batch size 2 forces several flushes inside the transaction, then a second transaction
    _write(store, [*obs[:3], *flows[:2], rich], batch=2)
    _write(store, [*obs[3:], *flows[2:], sparse], batch=2)

    (observation,) = _rows(store, OBSERVATION_TABLE)
    assert observation.count == 5
    assert observation.first_seen == T0
    assert observation.last_seen == T0 + timedelta(hours=4)
    (flow,) = _rows(store, FLOW_TABLE)
    assert (flow.connections, flow.packets, flow.bytes, flow.answered) == (5, 50, 5000, True)
    assert flow.day == date(2026, 11, 23)
    (service,) = _rows(store, SERVICE_TABLE)
    # a sparse later sighting widens the span but never erases the richer description
    assert (service.product, service.version, service.banner) == ("Postfix", "3.7", "220 mx")
    assert service.last_seen == T0 + timedelta(days=1)
    spans = {row.address: (row.first_seen, row.last_seen) for row in _rows(store, ASSET_TABLE)}
    assert spans["192.0.2.7"] == (T0, T0 + timedelta(days=1))
    assert "198.51.100.1" in spans
    sources = sorted((row.address, row.source) for row in _rows(store, ASSET_SOURCE_TABLE))
    assert sources == [("192.0.2.7", "pcap"), ("192.0.2.7", "probe"), ("198.51.100.1", "pcap")]
    store.close()


def test_bulk_writes_store_times_as_sqlalchemy_does(database: str) -> None:
    """Times written in bulk compare correctly in SQL with times SQLAlchemy writes itself."""
    store = Store.open(database)
    _write(store, [Observation("192.0.2.7", "protocol", "probe", T0, 25, "tcp", "smtp")], 10)
    with store.transaction("write rows") as conn:
        conn.execute(
            OBSERVATION_TABLE.insert(),
            [
                {
                    "address": "192.0.2.8",
                    "kind": "protocol",
                    "source": "probe",
                    "port": 25,
                    "transport": "tcp",
                    "value": "smtp",
                    "value_key": "k",
                    "detail": "",
                    "first_seen": T0,
                    "last_seen": T0,
                    "count": 1,
                }
            ],
        )
        stored = conn.exec_driver_sql(
            "SELECT address, first_seen FROM observation ORDER BY address"
        ).all()
    store.close()
    (bulk, ours), (core, theirs) = stored
    assert (bulk, core) == ("192.0.2.7", "192.0.2.8")
    assert ours == theirs


def test_derivations_from_two_processes_at_once_do_not_collide(database: str) -> None:
    """The daemon and the command line both derive after their writes: one waits for the other."""
    Store.open(database).close()
    errors: list[str] = []

    def write_and_derive(net: int) -> None:
        store = Store.open(database)  # its own connections, as another process has
        try:
            for batch in range(10):
                seen = datetime.now(UTC)
                records = [
                    Observation(
                        f"10.{net}.{batch}.{n}", "protocol", "probe", seen, 80, "tcp", "http"
                    )
                    for n in range(40)
                ]
                _write(store, records, 1000)
                store.derive()
        except StoreError as exc:
            errors.append(str(exc))
        finally:
            store.close()

    workers = [threading.Thread(target=write_and_derive, args=(net,)) for net in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    store = Store.open(database)
    web = [row for row in _rows(store, ROLE_TABLE) if row.role == "web-server"]
    store.close()
    assert len(web) == 3 * 10 * 40
