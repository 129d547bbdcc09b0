"""The store: one transaction per batch of records, upserted by natural key; runs and files."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.sql.dml import Insert

from rolecall.inventory import record_rows as rows
from rolecall.inventory.address_syntax import is_ip_address
from rolecall.inventory.daemon_lock import DaemonLock
from rolecall.inventory.database import database_url, make_engine, upgrade_schema
from rolecall.inventory.database_errors import database_name, translated
from rolecall.inventory.derivation.engine import DeriveSummary, derive
from rolecall.inventory.derivation.evidence_delta import (
    next_write_seq,
    stored_state,
    take_write_lock,
)
from rolecall.inventory.partitions import PARTITIONED, DayPartitions
from rolecall.inventory.runs import Run, RunBook
from rolecall.inventory.scan_chunks import ScanChunks
from rolecall.inventory.schedules import ScheduleTable
from rolecall.inventory.settings import DeriveSettings, settings_from_json
from rolecall.inventory.sql import upserts
from rolecall.inventory.sql.bulk import BulkStatement
from rolecall.inventory.tables import INGESTED_FILE_TABLE
from rolecall.probes.records import (
    ConnectRequest,
    Flow,
    HostName,
    Observation,
    Record,
    Service,
    SmtpTransaction,
    SocksRequest,
)

Row = dict[str, Any]
KEYS: dict[str, tuple[str, ...]] = {
    "asset": ("address",),
    "asset_source": ("address", "source"),
    "hostname": ("address", "name"),
    "observation": ("address", "kind", "source", "port", "transport", "value_key"),
    "service": ("address", "port", "transport", "source"),
    "smtp": ("ts", "client", "client_port", "server", "server_port", "trans_depth", "source"),
    "socks": ("ts", "client", "client_port", "proxy", "proxy_port", "source"),
    "connect": ("ts", "client", "client_port", "proxy", "proxy_port", "source"),
    "flow": ("client", "server", "server_port", "transport", "day", "source"),
}

WRITE_BATCH = 50_000
"""Records a writer queues (folding rows with the same key) before it writes them."""


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


@dataclass
class _Pending:
    """Rows of one table waiting to be written, merged by natural key."""

    statement: Insert
    key: tuple[str, ...]
    merge: Callable[[Row, Row], None]
    rows: dict[tuple[Any, ...], Row] = field(default_factory=dict)
    bulk: BulkStatement = field(init=False)
    key_of: Callable[[Row], tuple[Any, ...]] = field(init=False)

    def __post_init__(self) -> None:
        """Prepare the statement for many rows at a time, and the row's key getter."""
        self.bulk = BulkStatement(self.statement)
        # itemgetter of several names gives a tuple; of one, the bare value.
        only = self.key[0]
        self.key_of = itemgetter(*self.key) if len(self.key) > 1 else lambda row: (row[only],)

    def add(self, row: Row) -> None:
        """Queue a row, folding it into a queued row with the same key."""
        key = self.key_of(row)
        stored = self.rows.get(key)
        if stored is None:
            self.rows[key] = row
        else:
            self.merge(stored, row)

    def write(self, connection: Connection) -> None:
        """Write the queued rows with one executemany of the pre-compiled statement."""
        if self.rows:
            self.bulk.execute(connection, self.rows.values())
            self.rows.clear()


class RecordWriter:
    """Writes records inside one open transaction, in batches."""

    def __init__(self, connection: Connection, batch_size: int = WRITE_BATCH) -> None:
        dialect = connection.dialect.name
        self._connection = connection
        self._batch_size = batch_size
        self._queued = 0
        self._flow_seq = 0
        self.counts: Counter[str] = Counter()
        # PostgreSQL: the event tables' day partitions, made before a day's first rows.
        self._partitions = DayPartitions(connection) if dialect == "postgresql" else None
        self._tables = {
            "asset": _Pending(upserts.asset_upsert(dialect), KEYS["asset"], rows.merge_span),
            "asset_source": _Pending(
                upserts.asset_source_upsert(dialect), KEYS["asset_source"], rows.merge_span
            ),
            "hostname": _Pending(
                upserts.hostname_upsert(dialect), KEYS["hostname"], rows.merge_span
            ),
            "observation": _Pending(
                upserts.observation_upsert(dialect), KEYS["observation"], rows.merge_observation
            ),
            "service": _Pending(
                upserts.service_upsert(dialect), KEYS["service"], rows.merge_service
            ),
            "smtp": _Pending(upserts.smtp_insert(dialect), KEYS["smtp"], rows.keep_first),
            "socks": _Pending(upserts.socks_insert(dialect), KEYS["socks"], rows.keep_first),
            "connect": _Pending(upserts.connect_insert(dialect), KEYS["connect"], rows.keep_first),
            "flow": _Pending(upserts.flow_upsert(dialect), KEYS["flow"], rows.merge_flow),
        }

    def _seen(self, address: str, source: str, first: datetime, last: datetime) -> None:
        """Record that source saw address between first and last; only an IP is an asset.

        Anything else where an address belongs (a host name) is a reader's mistake: no
        asset is made of it, and it is counted (``not_addresses`` in the run's counts)
        rather than costing the whole file; the record's own row keeps what it says.
        """
        queued = self._tables["asset_source"].rows.get((address, source))
        if queued is not None:
            # The common case at ingest rates: widen in place, no new rows.
            queued["first_seen"] = min(queued["first_seen"], first)
            queued["last_seen"] = max(queued["last_seen"], last)
            return
        if not is_ip_address(address):
            self.counts["not_addresses"] += 1
            return
        span = {"first_seen": first, "last_seen": last}
        self._tables["asset"].add({"address": address, **span})
        self._tables["asset_source"].add({"address": address, "source": source, **span})

    def add(self, record: Record) -> None:
        """Queue one record (and the assets it names) for writing."""
        self._route(record)
        self.counts[type(record).__name__] += 1
        self._queued += 1
        if self._queued >= self._batch_size:
            self.flush()

    def add_all(self, records: Iterable[Record]) -> None:
        """Queue every record of an iterable."""
        for record in records:
            self.add(record)

    def _route(self, record: Record) -> None:
        """Turn a record into rows of the tables it belongs in."""
        match record:
            case Observation():
                self._tables["observation"].add(rows.observation_row(record))
                self._seen(record.address, record.source, record.seen, record.seen)
            case Service():
                self._tables["service"].add(rows.service_row(record))
                self._seen(record.address, record.source, record.seen, record.seen)
            case HostName():
                self._tables["hostname"].add(rows.hostname_row(record))
                self._seen(record.address, record.source, record.seen, record.seen)
            case SmtpTransaction():
                self._tables["smtp"].add(rows.smtp_row(record))
                self._seen(record.client, record.source, record.ts, record.ts)
                # Mail tunnelled to a name (SOCKS or CONNECT by name) names no address.
                if not record.via_proxy or is_ip_address(record.server):
                    self._seen(record.server, record.source, record.ts, record.ts)
            case SocksRequest():
                self._tables["socks"].add(rows.socks_row(record))
                self._seen(record.client, record.source, record.ts, record.ts)
                self._seen(record.proxy, record.source, record.ts, record.ts)
            case ConnectRequest():
                self._tables["connect"].add(rows.connect_row(record))
                self._seen(record.client, record.source, record.ts, record.ts)
                self._seen(record.proxy, record.source, record.ts, record.ts)
            case Flow():
                self._tables["flow"].add(rows.flow_row(record))
                self._seen(record.client, record.source, record.first_seen, record.last_seen)
                self._seen(record.server, record.source, record.first_seen, record.last_seen)

    def flush(self) -> None:
        """Write every queued row."""
        for address, source in self._tables["asset_source"].rows:
            # Assets were queued only on first sight; carry the widened spans over.
            span = self._tables["asset_source"].rows[(address, source)]
            asset = self._tables["asset"].rows[(address,)]
            asset["first_seen"] = min(asset["first_seen"], span["first_seen"])
            asset["last_seen"] = max(asset["last_seen"], span["last_seen"])
        if self._partitions is not None:
            self._partitions.before_write(
                {table: self._tables[table].rows.values() for table in PARTITIONED}
            )
        flows = self._tables["flow"].rows.values()
        if flows:
            if self._flow_seq == 0:
                self._flow_seq = next_write_seq(self._connection)
            for flow in flows:
                flow["seq"] = self._flow_seq
        for pending in self._tables.values():
            pending.write(self._connection)
        self._queued = 0

    def mark_ingested(self, kind: str, sha256: str, path: str, size: int, run_id: int) -> bool:
        """Remember that a file was ingested, in the same transaction as its records.

        False if another process ingesting the same file at once got there first (on
        PostgreSQL this waits for its commit): the caller then rolls this one back.
        """
        inserted = self._connection.execute(
            upserts.ingested_file_insert(self._connection.dialect.name).returning(
                INGESTED_FILE_TABLE.c.id
            ),
            {
                "kind": kind,
                "sha256": sha256,
                "path": path,
                "size": size,
                "run_id": run_id,
                "ingested": utcnow(),
            },
        ).first()
        return inserted is not None


class Store:
    """The inventory database: opened, upgraded, and written in transactions."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._runs = RunBook(engine)
        self._after_derive: list[Callable[[], None]] = []

    @classmethod
    def open(cls, target: str) -> Store:
        """Open (creating or upgrading as needed) the inventory at a path or URL.

        Runs left running by processes of this host that are gone are marked interrupted.
        """
        engine = make_engine(database_url(target))
        upgrade_schema(engine)
        store = cls(engine)
        store._runs.mark_abandoned()
        return store

    @property
    def name(self) -> str:
        """The database as its user names it: a file's path, or the URL without password."""
        return database_name(self._engine.url)

    def close(self) -> None:
        """Release every pooled connection."""
        self._engine.dispose()

    @property
    def schedules(self) -> ScheduleTable:
        """The schedules the daemon runs (plain data: nothing stored there is code)."""
        return ScheduleTable(self._engine)

    @property
    def scan_chunks(self) -> ScanChunks:
        """Cluster scans: runs queued in chunks to site workers, each chunk's state."""
        return ScanChunks(self._engine, RecordWriter)

    @contextmanager
    def writer(self, batch_size: int | None = None) -> Iterator[RecordWriter]:
        """Yield a writer whose records commit together, or not at all (batches: WRITE_BATCH)."""
        with translated(self._engine.url, "write records"), self._engine.begin() as connection:
            writer = RecordWriter(connection, WRITE_BATCH if batch_size is None else batch_size)
            yield writer
            writer.flush()

    @contextmanager
    def read(self, doing: str) -> Iterator[Connection]:
        """Yield a connection to read with; a database error is "cannot DOING in database X"."""
        with translated(self._engine.url, doing), self._engine.connect() as connection:
            yield connection

    @contextmanager
    def transaction(self, doing: str) -> Iterator[Connection]:
        """Yield a connection whose writes commit together at the end, or not at all."""
        with translated(self._engine.url, doing), self._engine.begin() as connection:
            yield connection

    def derive(self, settings: DeriveSettings | None = None, full: bool = False) -> DeriveSummary:
        """Bring roles, groups, findings and history up to date with the evidence.

        Without settings, the settings of the last derivation (or the defaults) apply.
        """
        with self.transaction("derive") as connection:
            take_write_lock(connection)
            if settings is None:
                settings = settings_from_json(stored_state(connection)[2])
            summary = derive(connection, settings, full)
        for callback in self._after_derive:
            callback()
        return summary

    def after_derive(self, callback: Callable[[], None]) -> None:
        """Call callback after every derivation has committed (alert delivery, see alerts)."""
        self._after_derive.append(callback)

    def derived_with(self) -> str:
        """The fingerprint of the settings of the last derivation ("" if none yet)."""
        with self.read("read the derivation state") as connection:
            return stored_state(connection)[1]

    def run(self, kind: str, target: str) -> AbstractContextManager[Run]:
        """Record a run: ok (or as marked) at the end, failed on an error, interrupted on Ctrl-C."""
        return self._runs.run(kind, target)

    def interrupt_open_runs(self, error: str) -> list[int]:
        """Record every run this store started and has not ended as interrupted; their ids."""
        return self._runs.interrupt_open(error)

    @contextmanager
    def daemon_lock(self, sensor: str = "") -> Iterator[None]:
        """Hold the inventory's (or a sensor's) daemon lock for the block (StoreError if held)."""
        lock = DaemonLock(self._engine, sensor)
        lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def already_ingested(self, kind: str, sha256: str) -> bool:
        """Return whether a file with this digest was ingested as kind before."""
        with self.read("look up ingested files") as connection:
            found = connection.execute(
                select(INGESTED_FILE_TABLE.c.id).where(
                    INGESTED_FILE_TABLE.c.kind == kind, INGESTED_FILE_TABLE.c.sha256 == sha256
                )
            ).first()
        return found is not None
