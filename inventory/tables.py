"""The inventory's tables (SQLAlchemy Core); column names follow the contract's exports.

Strings that hold one short token are VARCHAR; anything that may be long (banners,
subjects, JSON lists, evidence) is TEXT. Every column is NOT NULL unless it says
otherwise, and every timestamp is stored in UTC (UTCDateTime).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from rolecall.inventory.sql.column_types import UTCDateTime

METADATA = MetaData()


def _id() -> Column[Any]:
    """The integer surrogate key every event and fact table has."""
    return Column("id", Integer, primary_key=True)


def _token(name: str, **extra: Any) -> Column[Any]:
    """A short text column (an address, a name, a status)."""
    return Column(name, String, nullable=False, **extra)


def _text(name: str, **extra: Any) -> Column[Any]:
    """A text column of any length."""
    return Column(name, Text, nullable=False, **extra)


def _integer(name: str, **extra: Any) -> Column[Any]:
    """An integer column."""
    return Column(name, Integer, nullable=False, **extra)


def _moment(name: str, *, nullable: bool = False) -> Column[Any]:
    """A UTC timestamp column."""
    return Column(name, UTCDateTime(), nullable=nullable)


def _seen() -> tuple[Column[Any], Column[Any]]:
    """first_seen and last_seen."""
    return _moment("first_seen"), _moment("last_seen")


# One address seen by any source.
ASSET_TABLE = Table("asset", METADATA, _id(), _token("address", unique=True), *_seen())

# Which sources saw an address, and when.
ASSET_SOURCE_TABLE = Table(
    "asset_source",
    METADATA,
    _id(),
    _token("address"),
    _token("source"),
    *_seen(),
    UniqueConstraint("address", "source", name="uq_asset_source"),
)

# A name an address was seen under.
HOSTNAME_TABLE = Table(
    "hostname",
    METADATA,
    _id(),
    _token("address"),
    _token("name"),
    _token("source"),
    *_seen(),
    UniqueConstraint("address", "name", name="uq_hostname"),
)

# The append-only-by-key fact table: one row per distinct fact, counted.
OBSERVATION_TABLE = Table(
    "observation",
    METADATA,
    _id(),
    _token("address"),
    _token("kind"),
    _token("source"),
    _integer("port"),
    _token("transport"),
    _text("value"),
    # A digest of value keeps the unique index small whatever a banner's length.
    _token("value_key"),
    _text("detail"),
    *_seen(),
    _integer("count"),
    UniqueConstraint(
        "address", "kind", "source", "port", "transport", "value_key", name="uq_observation"
    ),
    Index("ix_observation_kind", "kind"),
    Index("ix_observation_last_seen", "last_seen"),
)

# A service on address/port/transport as one source saw it.
SERVICE_TABLE = Table(
    "service",
    METADATA,
    _id(),
    _token("address"),
    _integer("port"),
    _token("transport"),
    _token("protocol"),
    _token("product"),
    _token("version"),
    _token("auth"),
    _text("banner"),
    _token("source"),
    *_seen(),
    UniqueConstraint("address", "port", "transport", "source", name="uq_service"),
)

# A role an address plays, with the observations that show it.
ROLE_TABLE = Table(
    "role",
    METADATA,
    _id(),
    _token("address"),
    _token("role"),
    _token("source"),
    _text("evidence"),
    *_seen(),
    UniqueConstraint("address", "role", "source", name="uq_role"),
    Index("ix_role_role", "role"),
    # Derivations rewrite roles in place: room on each page keeps a rewrite out of the
    # indexes on PostgreSQL (migrations 0012 and 0013 say more).
    postgresql_with={"fillfactor": 50},
)

# One mail transaction (Zeek smtp.log fields); lists are JSON arrays.
SMTP_TABLE = Table(
    "smtp",
    METADATA,
    _id(),
    _moment("ts"),
    _token("client"),
    _integer("client_port"),
    _token("server"),
    _integer("server_port"),
    _integer("trans_depth"),
    _token("helo"),
    _token("mail_from"),
    _text("rcpt_to"),
    _text("refused_rcpt"),
    _text("subject"),
    _text("from"),
    _text("to"),
    _token("date"),
    _token("msg_id"),
    _token("user_agent"),
    _token("last_reply"),
    Column("tls", Boolean, nullable=False),
    _token("via_proxy"),
    _token("source"),
    _token("relayed_for", default="", server_default=""),
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

# One SOCKS request (Zeek socks.log fields).
SOCKS_TABLE = Table(
    "socks",
    METADATA,
    _id(),
    _moment("ts"),
    _token("client"),
    _integer("client_port"),
    _token("proxy"),
    _integer("proxy_port"),
    _integer("version"),
    _token("user"),
    _token("password"),
    _token("status"),
    _token("request_host"),
    _token("request_name"),
    _integer("request_port"),
    _token("bound_host"),
    _integer("bound_port"),
    _token("source"),
    UniqueConstraint(
        "ts", "client", "client_port", "proxy", "proxy_port", "source", name="uq_socks"
    ),
    Index("ix_socks_client", "client"),
    Index("ix_socks_proxy", "proxy"),
)

# One HTTP CONNECT request and the proxy's reply status (0: none seen).
CONNECT_TABLE = Table(
    "connect",
    METADATA,
    _id(),
    _moment("ts"),
    _token("client"),
    _integer("client_port"),
    _token("proxy"),
    _integer("proxy_port"),
    _token("user"),
    _token("password"),
    _integer("status"),
    _token("request_host"),
    _integer("request_port"),
    _token("source"),
    UniqueConstraint(
        "ts", "client", "client_port", "proxy", "proxy_port", "source", name="uq_connect"
    ),
    Index("ix_connect_client", "client"),
    Index("ix_connect_proxy", "proxy"),
)

# Traffic per client, server, server port, transport and UTC day, additive.
FLOW_TABLE = Table(
    "flow",
    METADATA,
    _id(),
    _token("client"),
    _token("server"),
    _integer("server_port"),
    _token("transport"),
    Column("day", Date, nullable=False),
    _token("source"),
    _integer("connections"),
    _integer("packets"),
    _integer("bytes"),
    *_seen(),
    Column("answered", Boolean, nullable=False),
    # The write that last added to this row (see evidence_delta.next_write_seq): a
    # derivation reads the flows written since its previous one by this alone.
    _integer("seq", default=0, server_default="0"),
    UniqueConstraint(
        "client", "server", "server_port", "transport", "day", "source", name="uq_flow"
    ),
    Index("ix_flow_day", "day"),
    Index("ix_flow_seq", "seq"),
)

# A finding raised by a rule on an address, with its evidence and status.
FINDING_TABLE = Table(
    "finding",
    METADATA,
    _id(),
    _token("rule"),
    _token("address"),
    _token("severity"),
    _text("summary"),
    _text("evidence"),
    *_seen(),
    _token("status"),
    _text("note", server_default=""),
    _moment("acknowledged", nullable=True),
    UniqueConstraint("rule", "address", name="uq_finding"),
    Index("ix_finding_address", "address"),
)

# Every scan, ingest and report: when, what, how it ended, what it counted.
RUN_TABLE = Table(
    "run",
    METADATA,
    _id(),
    _token("kind"),
    _text("target"),
    _moment("started"),
    _moment("ended", nullable=True),
    _token("status"),
    _text("counts"),
    _text("error"),
    # The process that runs it (see process_owner), so a run whose process died can be
    # told from one still running; "" and 0 for runs recorded before they were kept.
    _token("owner_host", default="", server_default=""),
    _integer("owner_pid", default=0, server_default="0"),
    _token("owner_process", default="", server_default=""),
    Index("ix_run_status", "status"),
)

# A file already ingested, by content digest, so ingesting it again changes nothing.
INGESTED_FILE_TABLE = Table(
    "ingested_file",
    METADATA,
    _id(),
    _token("kind"),
    _token("sha256"),
    _text("path"),
    _integer("size"),
    _integer("run_id"),
    _moment("ingested"),
    UniqueConstraint("kind", "sha256", name="uq_ingested_file"),
)

# An address's membership of a configured asset group.
ASSET_GROUP_TABLE = Table(
    "asset_group",
    METADATA,
    _id(),
    _token("address"),
    _token("name"),
    UniqueConstraint("address", "name", name="uq_asset_group"),
    Index("ix_asset_group_name", "name"),
)

# One day's value of a history series, network-wide (grp "") or for one group.
DAILY_METRIC_TABLE = Table(
    "daily_metric",
    METADATA,
    _id(),
    _token("metric"),
    _token("grp"),
    Column("day", Date, nullable=False),
    _integer("value"),
    UniqueConstraint("metric", "grp", "day", name="uq_daily_metric"),
)

# Where the last derivation stopped (watermarks) and with which settings.
DERIVE_STATE_TABLE = Table(
    "derive_state",
    METADATA,
    Column("key", String, primary_key=True),
    _text("value"),
)

# A schedule the daemon runs, as plain data: a job kind, JSON arguments, a trigger.
SCHEDULE_TABLE = Table(
    "schedule",
    METADATA,
    Column("id", String, primary_key=True),
    _token("kind"),
    _text("arguments"),
    # Exactly one of the two is set: a five-field crontab (UTC) or an interval in seconds.
    _token("cron"),
    _integer("every"),
    _token("origin"),
    _moment("created"),
    # Kept by the daemon, so a run missed while it was down still happens when it starts.
    _moment("next_run", nullable=True),
    # The sensor whose daemon runs it (rolecall run --sensor NAME); "" for the central daemon.
    _token("sensor", default="", server_default=""),
)

# A change of a finding, as the alert outputs send it: the finding's state at that change.
ALERT_EVENT_TABLE = Table(
    "alert_event",
    METADATA,
    Column("sequence", Integer, primary_key=True),
    _token("action"),
    _moment("at"),
    _token("rule"),
    _token("address"),
    _token("severity"),
    _text("summary"),
    _text("roles"),
    _text("groups"),
    *_seen(),
    _text("evidence"),
    _text("techniques"),
    _text("note"),
    Index("ix_alert_event_address", "address"),
    # AUTOINCREMENT: SQLite never hands out a sequence number again, even after deletes,
    # so an output's cursor never skips an event that took a freed number.
    sqlite_autoincrement=True,
)

# Where an alert output stands: the last event it took, its last error, who delivers.
ALERT_CURSOR_TABLE = Table(
    "alert_cursor",
    METADATA,
    Column("output", String, primary_key=True),
    _integer("sequence"),
    _moment("updated"),
    _text("error"),
    _moment("error_at", nullable=True),
    # (finding id, action) -> when last sent, within the output's suppression window (JSON).
    _text("recent"),
    # The process delivering to the output now, and until when its claim holds.
    _token("holder"),
    _moment("held_until", nullable=True),
)

# One queued piece of a cluster scan: its targets, the site that runs it, its state.
SCAN_CHUNK_TABLE = Table(
    "scan_chunk",
    METADATA,
    _id(),
    _integer("run_id"),
    # The chunk's place in its run (0, 1, ...): with run_id, the natural key.
    _integer("position"),
    _token("site"),
    # The chunk's networks, space-separated, in the form the scope reads.
    _text("targets"),
    _integer("addresses"),
    # queued, running, done, failed, refused (outside the worker's scope), interrupted
    _token("state"),
    _token("task_id"),
    # The worker that last took the chunk (host:pid) and how many times it was taken.
    _token("worker"),
    _integer("attempts"),
    _moment("queued"),
    _moment("started", nullable=True),
    _moment("ended", nullable=True),
    _text("counts"),
    _text("error"),
    UniqueConstraint("run_id", "position", name="uq_scan_chunk"),
    Index("ix_scan_chunk_state", "state"),
)
