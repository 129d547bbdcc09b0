"""Opening the inventory database: URL or path, SQLite pragmas, schema upgrades."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    create_engine,
    event,
    make_url,
    text,
)
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from rolecall.inventory.database_errors import (
    database_name,
    quiet_driver_log,
    reason,
    without_password,
)
from rolecall.inventory.errors import StoreError
from rolecall.inventory.partitions import is_partition

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

SQLITE_MAGIC = b"SQLite format 3\x00"
# The newest migration's revision (a test checks it against the migrations). A database
# already there opens without loading alembic, which costs more than a small ingest.
SCHEMA_HEAD = "0013"
BUSY_TIMEOUT_MS = 30_000
ANALYTIC_WORK_MEM_KB = 64 * 1024
"""PostgreSQL memory for each sort or hash of a derivation (see analytic_memory)."""
# Tables the schema does not describe. apscheduler_jobs held the pickled schedules of
# releases up to 0.1.0: migration 0004 converts its rows and drops it, or keeps it with the
# rows it could not convert, for their owner to look at.
FOREIGN_TABLES = frozenset({"apscheduler_jobs"})
# PostgreSQL URLs naming no driver (or Heroku's old scheme): psycopg 3 serves them.
POSTGRES_WITHOUT_DRIVER = frozenset({"postgresql", "postgres"})


def owned_by_migrations(name: str | None, type_: str, _parents: Any) -> bool:
    """Whether a schema object is rolecall's to migrate (alembic's include_name hook).

    Day partitions (PostgreSQL) are made and dropped by the store as days come and go.
    """
    return not (type_ == "table" and (name in FOREIGN_TABLES or is_partition(name)))


def database_url(target: str) -> str:
    """Return an SQLAlchemy URL for a URL or a filesystem path (SQLite)."""
    if "://" in target:
        return target
    path = Path(target).expanduser()
    _check_sqlite_path(path)
    return f"sqlite:///{path.resolve()}"


def _check_sqlite_path(path: Path) -> None:
    """Raise StoreError unless path can hold an SQLite database."""
    parent = path.parent if str(path.parent) else Path()
    if not parent.is_dir():
        raise StoreError(f"cannot create database {path}: directory {parent} does not exist")
    if path.is_dir():
        raise StoreError(f"cannot use database {path}: it is a directory")
    if path.exists():
        try:
            with path.open("rb") as handle:
                head = handle.read(len(SQLITE_MAGIC))
        except OSError as exc:
            raise StoreError(f"cannot read database {path}: {exc.strerror}") from exc
        if head and head != SQLITE_MAGIC:
            raise StoreError(f"{path} is not an SQLite database")
        return
    # The inventory holds mail metadata (and SOCKS passwords if asked to): owner-only,
    # whatever the umask. SQLite gives its -wal and -shm files the same mode.
    try:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise StoreError(f"cannot create database {path}: {exc.strerror}") from exc


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Put every new SQLite connection in WAL mode with a busy timeout and a larger cache."""
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # 32 MiB of page cache (default 2 MiB): a derivation that touches rows all over the
    # role table would otherwise spill dirty pages to the WAL before it commits.
    cursor.execute("PRAGMA cache_size=-32768")
    cursor.close()


def utc_session(dbapi_connection: Any, _record: Any) -> None:
    """Put every new PostgreSQL session in UTC, whatever the server's time zone.

    The store keeps and compares UTC; psycopg then reads each timestamp with Python's
    own UTC zone, which UTCDateTime takes as it is (a server in Etc/UTC, Debian's
    default, makes it convert every value read).
    """
    cursor = dbapi_connection.cursor()
    cursor.execute("SET TIME ZONE 'UTC'")
    cursor.close()
    # Committed, so that the pool's rollback of the first transaction does not undo it.
    dbapi_connection.commit()


def analytic_memory(connection: Connection) -> None:
    """On PostgreSQL, let this transaction's sorts and hashes take at least
    ANALYTIC_WORK_MEM_KB each (a server set higher keeps its own setting).

    A derivation aggregates every observation and flow: at the server's default 4 MB
    the aggregates spill to disk (measured at 100k hosts and 10M observations: the
    observation spans took 7.8 s, 3.0 s with 64 MB).
    """
    if connection.dialect.name != "postgresql":
        return
    current = connection.exec_driver_sql(
        "SELECT setting::bigint FROM pg_settings WHERE name = 'work_mem'"
    ).scalar()
    if current is not None and int(current) < ANALYTIC_WORK_MEM_KB:
        connection.exec_driver_sql(f"SET LOCAL work_mem = '{ANALYTIC_WORK_MEM_KB}kB'")


def make_engine(url: str) -> Engine:
    """Create an engine; SQLite connections get WAL, a busy timeout and explicit transactions."""
    try:
        parsed = make_url(url)
    except (SQLAlchemyError, ValueError):
        raise StoreError(f"{without_password(url)} is not a database URL") from None
    if parsed.drivername in POSTGRES_WITHOUT_DRIVER:
        # SQLAlchemy 2.0 would reach for psycopg2; psycopg 3 is the driver rolecall installs.
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        engine = create_engine(parsed)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise StoreError(f"cannot use database URL {database_name(parsed)}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        engine = create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", sqlite_pragmas)
    elif engine.dialect.name == "postgresql":
        quiet_driver_log()
        event.listen(engine, "connect", utc_session)
    else:
        raise StoreError(
            f"database {engine.dialect.name} is not supported: use SQLite or PostgreSQL"
        )
    return engine


def alembic_config(engine: Engine) -> Config:
    """Return an Alembic config pointing at the packaged migrations."""
    from alembic.config import Config  # noqa: PLC0415 - see SCHEMA_HEAD

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.attributes["engine"] = engine
    return config


def schema_revision(engine: Engine) -> str | None:
    """Return the database's recorded schema revision (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext  # noqa: PLC0415 - see SCHEMA_HEAD

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _at_head(engine: Engine) -> bool:
    """Whether the database records exactly this code's newest schema revision."""
    try:
        with engine.connect() as connection:
            found = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    except DBAPIError:
        return False  # no alembic_version table yet: a new database
    return [row[0] for row in found] == [SCHEMA_HEAD]


def _known_revision(script: ScriptDirectory, revision: str) -> bool:
    """Return whether this code's migrations know revision."""
    from alembic.util.exc import CommandError  # noqa: PLC0415 - see SCHEMA_HEAD

    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False


def _version_table() -> Table:
    """The table alembic records the schema revision in, as alembic itself declares it."""
    return Table(
        "alembic_version",
        MetaData(),
        Column("version_num", String(32), nullable=False),
        PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
    )


def _created_at_head(engine: Engine) -> bool:
    """Make a new SQLite inventory's schema from the models at once, recorded at SCHEMA_HEAD.

    The models are what the migrations build (tests compare the two schemas), so a new
    inventory is made without loading alembic and replaying every migration, which costs
    more than a small ingest. False, touching nothing, unless the database is SQLite and
    empty; PostgreSQL's event tables are partitioned by a migration (0010).
    """
    if engine.dialect.name != "sqlite":
        return False
    from rolecall.inventory.tables import METADATA  # noqa: PLC0415 - only a new inventory needs them

    with engine.connect() as connection:
        # The write lock first, as the migrations take it: of processes opening one new
        # inventory at once, one creates the schema and the others then find it at head.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        if connection.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar():
            connection.rollback()
            return False
        METADATA.create_all(connection, checkfirst=False)  # the database is empty: checked above
        version = _version_table()
        version.create(connection)
        connection.execute(version.insert().values(version_num=SCHEMA_HEAD))
        connection.commit()
    return True


def upgrade_schema(engine: Engine, revision: str = "head") -> None:
    """Create or upgrade the schema to revision; refuse a database newer than this code."""
    if revision == "head" and _at_head(engine):
        return
    try:
        if revision == "head" and _created_at_head(engine):
            return
        _migrate(engine, revision)
    except StoreError:
        raise
    except DBAPIError as exc:
        raise StoreError(f"cannot use database {database_name(engine.url)}: {reason(exc)}") from exc
    except Exception as exc:
        if exc.__class__.__module__.startswith("alembic"):
            name = database_name(engine.url)
            raise StoreError(f"database schema {name} is not usable: {exc}") from exc
        raise


def _migrate(engine: Engine, revision: str) -> None:
    """Run the migrations up to revision; refuse a database newer than this code."""
    from alembic import command  # noqa: PLC0415 - see SCHEMA_HEAD
    from alembic.script import ScriptDirectory  # noqa: PLC0415 - see SCHEMA_HEAD

    config = alembic_config(engine)
    script = ScriptDirectory.from_config(config)
    current = schema_revision(engine)
    if current is not None and not _known_revision(script, current):
        raise StoreError(f"database schema {current} is newer than this rolecall: upgrade rolecall")
    if revision == "head" and current == script.get_current_head():
        return
    command.upgrade(config, revision)
