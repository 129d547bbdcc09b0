"""SQLModel tables of the inventory; column names follow the contract's exports."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Column, Index, Table, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


class Asset(SQLModel, table=True):
    """One address seen by any source."""

    id: int | None = Field(default=None, primary_key=True)
    address: str = Field(unique=True)
    first_seen: datetime
    last_seen: datetime


class AssetSource(SQLModel, table=True):
    """Which sources saw an address, and when."""

    __tablename__ = "asset_source"
    __table_args__ = (UniqueConstraint("address", "source", name="uq_asset_source"),)

    id: int | None = Field(default=None, primary_key=True)
    address: str
    source: str
    first_seen: datetime
    last_seen: datetime


class HostnameRow(SQLModel, table=True):
    """A name an address was seen under."""

    __tablename__ = "hostname"
    __table_args__ = (UniqueConstraint("address", "name", name="uq_hostname"),)

    id: int | None = Field(default=None, primary_key=True)
    address: str
    name: str
    source: str
    first_seen: datetime
    last_seen: datetime


class ObservationRow(SQLModel, table=True):
    """The append-only-by-key fact table: one row per distinct fact, counted."""

    __tablename__ = "observation"
    __table_args__ = (
        UniqueConstraint(
            "address", "kind", "source", "port", "transport", "value_key", name="uq_observation"
        ),
        Index("ix_observation_kind", "kind"),
        Index("ix_observation_last_seen", "last_seen"),
    )

    id: int | None = Field(default=None, primary_key=True)
    address: str
    kind: str
    source: str
    port: int
    transport: str
    value: str = Field(sa_column=Column(Text, nullable=False))
    # A digest of value keeps the unique index small whatever a banner's length.
    value_key: str
    detail: str = Field(sa_column=Column(Text, nullable=False))
    first_seen: datetime
    last_seen: datetime
    count: int


class ServiceRow(SQLModel, table=True):
    """A service on address/port/transport as one source saw it."""

    __tablename__ = "service"
    __table_args__ = (
        UniqueConstraint("address", "port", "transport", "source", name="uq_service"),
    )

    id: int | None = Field(default=None, primary_key=True)
    address: str
    port: int
    transport: str
    protocol: str
    product: str
    version: str
    auth: str
    banner: str = Field(sa_column=Column(Text, nullable=False))
    source: str
    first_seen: datetime
    last_seen: datetime


class RoleRow(SQLModel, table=True):
    """A role an address plays, with the observations that show it."""

    __tablename__ = "role"
    __table_args__ = (
        UniqueConstraint("address", "role", "source", name="uq_role"),
        Index("ix_role_role", "role"),
    )

    id: int | None = Field(default=None, primary_key=True)
    address: str
    role: str
    source: str
    evidence: str = Field(sa_column=Column(Text, nullable=False))
    first_seen: datetime
    last_seen: datetime


class SmtpRow(SQLModel, table=True):
    """One mail transaction (Zeek smtp.log fields); lists are JSON arrays."""

    __tablename__ = "smtp"
    __table_args__ = (
        UniqueConstraint(
            "ts",
            "client",
            "client_port",
            "server",
            "server_port",
            "trans_depth",
            "source",
            name="uq_smtp",
        ),
        Index("ix_smtp_client", "client"),
        Index("ix_smtp_ts", "ts"),
    )

    id: int | None = Field(default=None, primary_key=True)
    ts: datetime
    client: str
    client_port: int
    server: str
    server_port: int
    trans_depth: int
    helo: str
    mail_from: str
    rcpt_to: str = Field(sa_column=Column(Text, nullable=False))
    refused_rcpt: str = Field(sa_column=Column(Text, nullable=False))
    subject: str = Field(sa_column=Column(Text, nullable=False))
    from_: str = Field(sa_column=Column("from", Text, nullable=False))
    to: str = Field(sa_column=Column(Text, nullable=False))
    date: str
    msg_id: str
    user_agent: str
    last_reply: str
    tls: bool
    via_proxy: str
    source: str
    relayed_for: str = Field(default="", sa_column_kwargs={"server_default": ""})


class SocksRow(SQLModel, table=True):
    """One SOCKS request (Zeek socks.log fields)."""

    __tablename__ = "socks"
    __table_args__ = (
        UniqueConstraint(
            "ts", "client", "client_port", "proxy", "proxy_port", "source", name="uq_socks"
        ),
        Index("ix_socks_client", "client"),
        Index("ix_socks_proxy", "proxy"),
    )

    id: int | None = Field(default=None, primary_key=True)
    ts: datetime
    client: str
    client_port: int
    proxy: str
    proxy_port: int
    version: int
    user: str
    password: str
    status: str
    request_host: str
    request_name: str
    request_port: int
    bound_host: str
    bound_port: int
    source: str


class ConnectRow(SQLModel, table=True):
    """One HTTP CONNECT request and the proxy's reply status (0: none seen)."""

    __tablename__ = "connect"
    __table_args__ = (
        UniqueConstraint(
            "ts", "client", "client_port", "proxy", "proxy_port", "source", name="uq_connect"
        ),
        Index("ix_connect_client", "client"),
        Index("ix_connect_proxy", "proxy"),
    )

    id: int | None = Field(default=None, primary_key=True)
    ts: datetime
    client: str
    client_port: int
    proxy: str
    proxy_port: int
    user: str
    password: str
    status: int
    request_host: str
    request_port: int
    source: str


class FlowRow(SQLModel, table=True):
    """Traffic per client, server, server port, transport and UTC day, additive."""

    __tablename__ = "flow"
    __table_args__ = (
        UniqueConstraint(
            "client", "server", "server_port", "transport", "day", "source", name="uq_flow"
        ),
        Index("ix_flow_day", "day"),
        Index("ix_flow_seq", "seq"),
    )

    id: int | None = Field(default=None, primary_key=True)
    client: str
    server: str
    server_port: int
    transport: str
    day: date
    source: str
    connections: int
    packets: int
    bytes: int
    first_seen: datetime
    last_seen: datetime
    answered: bool
    # The write that last added to this row (see evidence_delta.next_write_seq): a
    # derivation reads the flows written since its previous one by this alone.
    seq: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class FindingRow(SQLModel, table=True):
    """A finding raised by a rule on an address, with its evidence and status."""

    __tablename__ = "finding"
    __table_args__ = (
        UniqueConstraint("rule", "address", name="uq_finding"),
        Index("ix_finding_address", "address"),
    )

    id: int | None = Field(default=None, primary_key=True)
    rule: str
    address: str
    severity: str
    summary: str = Field(sa_column=Column(Text, nullable=False))
    evidence: str = Field(sa_column=Column(Text, nullable=False))
    first_seen: datetime
    last_seen: datetime
    status: str
    note: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    acknowledged: datetime | None = None


class RunRow(SQLModel, table=True):
    """Every scan, ingest and report: when, what, how it ended, what it counted."""

    __tablename__ = "run"
    __table_args__ = (Index("ix_run_status", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str
    target: str = Field(sa_column=Column(Text, nullable=False))
    started: datetime
    ended: datetime | None = None
    status: str
    counts: str = Field(sa_column=Column(Text, nullable=False))
    error: str = Field(sa_column=Column(Text, nullable=False))
    # The process that runs it (see process_owner), so a run whose process died can be
    # told from one still running; "" and 0 for runs recorded before they were kept.
    owner_host: str = Field(default="", sa_column_kwargs={"server_default": ""})
    owner_pid: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    owner_process: str = Field(default="", sa_column_kwargs={"server_default": ""})


class IngestedFile(SQLModel, table=True):
    """A file already ingested, by content digest, so ingesting it again changes nothing."""

    __tablename__ = "ingested_file"
    __table_args__ = (UniqueConstraint("kind", "sha256", name="uq_ingested_file"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str
    sha256: str
    path: str = Field(sa_column=Column(Text, nullable=False))
    size: int
    run_id: int
    ingested: datetime


class AssetGroupRow(SQLModel, table=True):
    """An address's membership of a configured asset group."""

    __tablename__ = "asset_group"
    __table_args__ = (
        UniqueConstraint("address", "name", name="uq_asset_group"),
        Index("ix_asset_group_name", "name"),
    )

    id: int | None = Field(default=None, primary_key=True)
    address: str
    name: str


class DailyMetricRow(SQLModel, table=True):
    """One day's value of a history series, network-wide (grp "") or for one group."""

    __tablename__ = "daily_metric"
    __table_args__ = (UniqueConstraint("metric", "grp", "day", name="uq_daily_metric"),)

    id: int | None = Field(default=None, primary_key=True)
    metric: str
    grp: str
    day: date
    value: int


class DeriveStateRow(SQLModel, table=True):
    """Where the last derivation stopped (watermarks) and with which settings."""

    __tablename__ = "derive_state"

    key: str = Field(primary_key=True)
    value: str = Field(sa_column=Column(Text, nullable=False))


class ScheduleRow(SQLModel, table=True):
    """A schedule the daemon runs, as plain data: a job kind, JSON arguments, a trigger."""

    __tablename__ = "schedule"

    id: str = Field(primary_key=True)
    kind: str
    arguments: str = Field(sa_column=Column(Text, nullable=False))
    # Exactly one of the two is set: a five-field crontab (UTC) or an interval in seconds.
    cron: str
    every: int
    origin: str
    created: datetime
    # Kept by the daemon, so a run missed while it was down still happens when it starts.
    next_run: datetime | None = None
    # The sensor whose daemon runs it (rolecall run --sensor NAME); "" for the central daemon.
    sensor: str = Field(default="", sa_column_kwargs={"server_default": ""})


class AlertEventRow(SQLModel, table=True):
    """A change of a finding, as the alert outputs send it: the finding's state at that change."""

    __tablename__ = "alert_event"
    # AUTOINCREMENT: SQLite never hands out a sequence number again, even after deletes,
    # so an output's cursor never skips an event that took a freed number.
    __table_args__ = (Index("ix_alert_event_address", "address"), {"sqlite_autoincrement": True})

    sequence: int | None = Field(default=None, primary_key=True)
    action: str
    at: datetime
    rule: str
    address: str
    severity: str
    summary: str = Field(sa_column=Column(Text, nullable=False))
    roles: str = Field(sa_column=Column(Text, nullable=False))
    groups: str = Field(sa_column=Column(Text, nullable=False))
    first_seen: datetime
    last_seen: datetime
    evidence: str = Field(sa_column=Column(Text, nullable=False))
    techniques: str = Field(sa_column=Column(Text, nullable=False))
    note: str = Field(sa_column=Column(Text, nullable=False))


class AlertCursorRow(SQLModel, table=True):
    """Where an alert output stands: the last event it took, its last error, who delivers."""

    __tablename__ = "alert_cursor"

    output: str = Field(primary_key=True)
    sequence: int
    updated: datetime
    error: str = Field(sa_column=Column(Text, nullable=False))
    error_at: datetime | None = None
    # (finding id, action) -> when last sent, within the output's suppression window (JSON).
    recent: str = Field(sa_column=Column(Text, nullable=False))
    # The process delivering to the output now, and until when its claim holds.
    holder: str
    held_until: datetime | None = None


class ScanChunkRow(SQLModel, table=True):
    """One queued piece of a cluster scan: its targets, the site that runs it, its state."""

    __tablename__ = "scan_chunk"
    __table_args__ = (
        UniqueConstraint("run_id", "position", name="uq_scan_chunk"),
        Index("ix_scan_chunk_state", "state"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: int
    # The chunk's place in its run (0, 1, ...): with run_id, the natural key.
    position: int
    site: str
    # The chunk's networks, space-separated, in the form the scope reads.
    targets: str = Field(sa_column=Column(Text, nullable=False))
    addresses: int
    # queued, running, done, failed, refused (outside the worker's scope), interrupted
    state: str
    task_id: str
    # The worker that last took the chunk (host:pid) and how many times it was taken.
    worker: str
    attempts: int
    queued: datetime
    started: datetime | None = None
    ended: datetime | None = None
    counts: str = Field(sa_column=Column(Text, nullable=False))
    error: str = Field(sa_column=Column(Text, nullable=False))


def core_table(model: Any) -> Table:
    """The SQLAlchemy Core table of a SQLModel table class."""
    table: Table = model.__table__
    return table
