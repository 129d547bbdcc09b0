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

from rolecall.collector import collector_paused
from rolecall.inventory import record_rows as rows
from rolecall.inventory.address_syntax import is_ip_address
from rolecall.inventory.daemon_lock import DaemonLock
from rolecall.inventory.database import analytic_memory, database_url, make_engine, upgrade_schema
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


@dataclass
class _Once:
    """Rows of an insert-once table as tuples of driver values, the first of each key kept.

    A row holds the table's columns in the table's order, its surrogate key left out.
    """

    statement: Insert
    key: tuple[str, ...]
    rows: dict[Any, tuple[Any, ...]] = field(default_factory=dict)
    names: tuple[str, ...] = field(init=False)
    bulk: BulkStatement = field(init=False)
    key_of: Callable[[tuple[Any, ...]], Any] = field(init=False)

    def __post_init__(self) -> None:
        """Prepare the statement for many rows at a time, and the row's key getter."""
        columns = self.statement.table.columns
        self.names = tuple(column.name for column in columns if not column.primary_key)
        self.bulk = BulkStatement(self.statement)
        self.key_of = itemgetter(*(self.names.index(name) for name in self.key))

    def stamp(self, connection: Connection, column: str) -> Callable[[Any], Any]:
        """What turns a value of the column into the driver's, applied as rows are made."""
        return self.bulk.processor(connection, self.names, column)

    def add(self, row: tuple[Any, ...]) -> None:
        """Queue a row unless a row with the same key is queued (the stored one stays)."""
        self.rows.setdefault(self.key_of(row), row)

    def days(self, column: str) -> list[Row]:
        """The queued rows' distinct values of a column, as rows of that column alone."""
        position = self.names.index(column)
        return [{column: value} for value in {row[position] for row in self.rows.values()}]

    def write(self, connection: Connection, converted: tuple[str, ...]) -> None:
        """Write the queued rows with one executemany (columns in converted: done already)."""
        if self.rows:
            self.bulk.execute_values(connection, self.names, list(self.rows.values()), converted)
            self.rows.clear()


Sighting = tuple[str, str, datetime, datetime]


class RecordWriter:
    """Writes records inside one open transaction, in batches."""

    def __init__(self, connection: Connection, batch_size: int = WRITE_BATCH) -> None:
        dialect = connection.dialect.name
        self._connection = connection
        self._batch_size = batch_size
        self._queued = 0
        self._flow_seq = 0
        self.counts: Counter[str] = Counter()
        # Who saw which address when, in order: assets are made of them at each write.
        self._sightings: list[Sighting] = []
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
            "flow": _Pending(upserts.flow_upsert(dialect), KEYS["flow"], rows.merge_flow),
        }
        self._once = {
            "smtp": _Once(upserts.smtp_insert(dialect), KEYS["smtp"]),
            "socks": _Once(upserts.socks_insert(dialect), KEYS["socks"]),
            "connect": _Once(upserts.connect_insert(dialect), KEYS["connect"]),
        }
        # Each insert-once row is made with its timestamp (and flag) already the driver's.
        smtp, socks, connect = self._once["smtp"], self._once["socks"], self._once["connect"]
        self._smtp_values = rows.smtp_values(
            smtp.stamp(connection, "ts"), smtp.stamp(connection, "tls")
        )
        self._socks_values = rows.socks_values(socks.stamp(connection, "ts"))
        self._connect_values = rows.connect_values(connect.stamp(connection, "ts"))
        self._routes: dict[type, Callable[[Any], None]] = {
            Observation: self._observation,
            Service: self._service,
            HostName: self._hostname,
            SmtpTransaction: self._smtp,
            SocksRequest: self._socks,
            ConnectRequest: self._connect,
            Flow: self._flow,
        }

    def add(self, record: Record) -> None:
        """Queue one record (and the assets it names) for writing."""
        route = self._routes.get(type(record))
        if route is None:
            route = self._routes[_record_class(record)]
        route(record)
        self.counts[type(record).__name__] += 1
        self._queued += 1
        if self._queued >= self._batch_size:
            self.flush()

    def add_all(self, records: Iterable[Record]) -> None:
        """Queue every record of an iterable."""
        for record in records:
            self.add(record)

    def _observation(self, record: Observation) -> None:
        """Queue an observation and its sighting."""
        self._tables["observation"].add(rows.observation_row(record))
        self._sightings.append((record.address, record.source, record.seen, record.seen))

    def _service(self, record: Service) -> None:
        """Queue a service and its sighting."""
        self._tables["service"].add(rows.service_row(record))
        self._sightings.append((record.address, record.source, record.seen, record.seen))

    def _hostname(self, record: HostName) -> None:
        """Queue a host name and its sighting."""
        self._tables["hostname"].add(rows.hostname_row(record))
        self._sightings.append((record.address, record.source, record.seen, record.seen))

    def _smtp(self, record: SmtpTransaction) -> None:
        """Queue a mail transaction and the sightings of its ends."""
        self._once["smtp"].add(self._smtp_values(record))
        ts, source = record.ts, record.source
        self._sightings.append((record.client, source, ts, ts))
        # Mail tunnelled to a name (SOCKS or CONNECT by name) names no address.
        if not record.via_proxy or is_ip_address(record.server):
            self._sightings.append((record.server, source, ts, ts))

    def _socks(self, record: SocksRequest) -> None:
        """Queue a SOCKS request and the sightings of client and proxy."""
        self._once["socks"].add(self._socks_values(record))
        ts, source = record.ts, record.source
        self._sightings += ((record.client, source, ts, ts), (record.proxy, source, ts, ts))

    def _connect(self, record: ConnectRequest) -> None:
        """Queue a CONNECT request and the sightings of client and proxy."""
        self._once["connect"].add(self._connect_values(record))
        ts, source = record.ts, record.source
        self._sightings += ((record.client, source, ts, ts), (record.proxy, source, ts, ts))

    def _flow(self, record: Flow) -> None:
        """Queue a flow and the sightings of its ends."""
        self._tables["flow"].add(rows.flow_row(record))
        first, last, source = record.first_seen, record.last_seen, record.source
        self._sightings += (
            (record.client, source, first, last),
            (record.server, source, first, last),
        )

    def _assets(self) -> None:
        """Queue the assets (and their sources) of the sightings since the last write.

        Only an IP is an asset. Anything else where an address belongs (a host name) is
        a reader's mistake: no asset is made of it, and each sighting is counted
        (``not_addresses`` in the run's counts) rather than costing the whole file; the
        record's own row keeps what it says. Rows are queued in order of first sight.
        """
        sightings = self._sightings
        if not sightings:
            return
        self._sightings = []
        named = dict.fromkeys(map(itemgetter(0), sightings))
        wrong = {address for address in named if not is_ip_address(address)}
        if wrong:
            kept = [sighting for sighting in sightings if sighting[0] not in wrong]
            self.counts["not_addresses"] += len(sightings) - len(kept)
            sightings = kept
        keys = list(map(itemgetter(0, 1), sightings))
        # Sorted by time, the last value a dict keeps for a key is the latest (or, sorted
        # backwards, the earliest): one C-level pass instead of a comparison per sighting.
        earliest = dict(
            sorted(
                zip(keys, map(itemgetter(2), sightings), strict=True),
                key=itemgetter(1),
                reverse=True,
            )
        )
        latest = dict(
            sorted(zip(keys, map(itemgetter(3), sightings), strict=True), key=itemgetter(1))
        )
        by_source, by_address = self._tables["asset_source"], self._tables["asset"]
        for key in dict.fromkeys(keys):
            address, source = key
            first, last = earliest[key], latest[key]
            by_source.add(
                {"address": address, "source": source, "first_seen": first, "last_seen": last}
            )
            by_address.add({"address": address, "first_seen": first, "last_seen": last})

    def flush(self) -> None:
        """Write every queued row."""
        self._assets()
        if self._partitions is not None:
            self._partitions.before_write(
                {
                    table: self._once[table].days(column)
                    if table in self._once
                    else self._tables[table].rows.values()
                    for table, column in PARTITIONED.items()
                }
            )
        flows = self._tables["flow"].rows.values()
        if flows:
            if self._flow_seq == 0:
                self._flow_seq = next_write_seq(self._connection)
            for flow in flows:
                flow["seq"] = self._flow_seq
        for pending in self._tables.values():
            pending.write(self._connection)
        for once in self._once.values():
            once.write(self._connection, ("ts", "tls"))
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


def _record_class(record: Record) -> type:
    """The record type a record is an instance of (a subclass is stored as its base)."""
    for kind in (Observation, Service, HostName, SmtpTransaction, SocksRequest, ConnectRequest):
        if isinstance(record, kind):
            return kind
    if isinstance(record, Flow):
        return Flow
    raise TypeError(f"not a record: {type(record).__name__}")


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
        # A derivation holds every role it finds (a full one: hundreds of thousands, each
        # with its evidence list) while it reads millions of rows. The cyclic collector's
        # full passes walk all of them and free next to nothing: up to a quarter of a full
        # derivation's time (measured); reference counting frees the rows as before.
        with self.transaction("derive") as connection, collector_paused():
            take_write_lock(connection)
            analytic_memory(connection)
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
