"""PostgreSQL day partitions of the event tables: made on ingest, dropped by prune, bounded."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest

from rolecall.inventory.database import SCHEMA_HEAD, database_url, make_engine, upgrade_schema
from rolecall.inventory.partitions import (
    LOCK_TIMEOUT,
    PARTITION_LOCK,
    create_day,
    day_start,
    partition_days,
)
from rolecall.inventory.retention import prune
from rolecall.inventory.store import Store
from rolecall.probes.records import Flow, Record, SmtpTransaction
from tests.daemon_helpers import ROLECALL
from tests.inventory_sql import execute, query
from tests.postgres_server import PostgresServer
from tests.zeek_helpers import tsv_header, tsv_line


@pytest.fixture
def url(postgres: PostgresServer) -> Iterator[str]:
    """A fresh, empty PostgreSQL database."""
    created = postgres.create_database()
    yield created
    postgres.drop_database(created)


def _today() -> date:
    """Today's UTC date."""
    return datetime.now(UTC).date()


def _mail(
    day: date, client: str = "10.0.0.1", port: int = 40000, server: str = "192.0.2.25"
) -> SmtpTransaction:
    """One mail transaction at noon of day."""
    at = datetime.combine(day, time(12), tzinfo=UTC)
    return SmtpTransaction(at, client, port, server, 25, "zeek")


def _flow(day: date, client: str = "10.0.0.1") -> Flow:
    """One SMTP flow on day."""
    at = datetime.combine(day, time(12), tzinfo=UTC)
    return Flow(client, "192.0.2.25", 25, "tcp", day, "zeek", at, at, 1, 10, 100, True)


def _write(url: str, records: list[Record]) -> None:
    """Store records in one writer."""
    store = Store.open(url)
    with store.writer() as writer:
        writer.add_all(records)
    store.close()


def _days(url: str, table: str) -> set[date]:
    """The table's day partitions."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return set(partition_days(connection, table))
    finally:
        engine.dispose()


def _in_default(url: str, table: str) -> int:
    """Rows held by the table's default partition."""
    ((count,),) = query(url, f'SELECT count(*) FROM "{table}_default"')  # noqa: S608
    return int(count)


def test_ingest_makes_a_partition_per_day_and_prune_drops_the_old_ones(url: str) -> None:
    today = _today()
    days = [today - timedelta(days=ago) for ago in (10, 9, 1, 0)]
    _write(url, [record for day in days for record in (_mail(day), _flow(day))])

    assert _days(url, "smtp") == set(days)
    assert _days(url, "flow") == set(days)
    assert _in_default(url, "smtp") == _in_default(url, "flow") == 0

    store = Store.open(url)
    summary = prune(store, 5)
    store.close()

    assert summary.removed["smtp"] == summary.removed["flow"] == 2
    assert summary.partitions_dropped == 4  # two days of smtp, two of flow
    assert _days(url, "smtp") == _days(url, "flow") == set(days[2:])
    assert query(url, "SELECT count(*) FROM smtp") == [(2,)]
    # Later writes of those days go to the default partition, and the next prune empties it.
    _write(url, [_mail(days[0], port=40001)])
    assert days[0] not in _days(url, "smtp"), "a day long gone is outside the window"
    assert _in_default(url, "smtp") == 1
    store = Store.open(url)
    assert prune(store, 5).removed["smtp"] == 1
    store.close()
    assert _in_default(url, "smtp") == 0
    assert query(url, "SELECT count(*) FROM smtp") == [(2,)]


def test_a_hostile_spread_of_days_goes_to_the_default_partition(url: str) -> None:
    today = _today()
    far = [date(1971, 1, 1) + timedelta(days=n) for n in range(1500)]
    future = [today + timedelta(days=n) for n in range(3, 503)]
    records: list[Record] = [_flow(day) for day in far + future]
    records += [_mail(day, port=n) for n, day in enumerate(far + future)]
    records += [_mail(today), _flow(today)]
    _write(url, records)

    assert _days(url, "flow") == _days(url, "smtp") == {today}
    assert _in_default(url, "flow") == _in_default(url, "smtp") == 2000
    assert query(url, "SELECT count(*) FROM flow") == [(2001,)]
    ((tables,),) = query(url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
    assert tables < 40


def test_a_partition_made_for_a_day_the_default_holds_takes_its_rows(url: str) -> None:
    day = _today() - timedelta(days=3)
    store = Store.open(url)
    # Rows written where the day has no partition (as a writer that could not make it at
    # once leaves them) are in the default partition.
    execute(
        url,
        "INSERT INTO smtp (ts, client, client_port, server, server_port, trans_depth, helo,"
        ' mail_from, rcpt_to, refused_rcpt, subject, "from", "to", date, msg_id, user_agent,'
        " last_reply, tls, via_proxy, source) SELECT"
        " :start + n * interval '1 minute', '10.0.0.1',"
        " 40000 + n, '192.0.2.25', 25, 1, '', '', '[]', '[]', '', '', '[]', '', '', '', '',"
        " FALSE, '', 'zeek' FROM generate_series(1, 5) AS n",
        start=datetime.combine(day, time(10), tzinfo=UTC),
    )
    assert _in_default(url, "smtp") == 5

    with store.transaction("make the day's partition") as connection:
        assert create_day(connection, "smtp", day)
        assert not create_day(connection, "smtp", day), "made once"
    store.close()

    assert _days(url, "smtp") == {day}
    assert _in_default(url, "smtp") == 0
    assert query(url, f'SELECT count(*) FROM "smtp_p{day:%Y%m%d}"') == [(5,)]  # noqa: S608


def test_two_writers_make_the_same_days_partition_at_once(url: str) -> None:
    today = _today()
    stores = [Store.open(url) for _ in range(2)]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def write(store: Store, client: str) -> None:
        try:
            start.wait()
            with store.writer() as writer:
                writer.add_all([_mail(today, client, port) for port in range(40000, 40200)])
                writer.add_all([_flow(today, client)])
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=write, args=(store, f"10.0.0.{n}"))
        for n, store in enumerate(stores, start=1)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()

    assert errors == []
    assert _days(url, "smtp") == _days(url, "flow") == {today}
    assert query(url, "SELECT count(*) FROM smtp") == [(400,)]
    assert _in_default(url, "smtp") == 0


def test_a_writer_that_cannot_make_a_partition_at_once_uses_the_default_then_prune_moves_it(
    url: str,
) -> None:
    today = _today()
    other = today - timedelta(days=2)
    holder = Store.open(url)
    late = Store.open(url)
    with holder.writer(batch_size=1) as writer:
        writer.add(_mail(today))  # written: the holder's transaction now locks smtp
        started = datetime.now(UTC)
        # Other hosts: the holder's rows of its own hosts would make this writer wait.
        _write(url, [_mail(other, "10.0.0.2", server="192.0.2.26")])
        waited = datetime.now(UTC) - started
    assert waited < timedelta(seconds=float(LOCK_TIMEOUT.removesuffix("s")) + 5)
    assert other not in _days(url, "smtp")
    assert _in_default(url, "smtp") == 1

    prune(late, 5)
    holder.close()
    late.close()
    assert _days(url, "smtp") == {today, other}
    assert _in_default(url, "smtp") == 0
    assert query(url, "SELECT count(*) FROM smtp") == [(2,)]


def test_prune_makes_partitions_under_the_partition_lock(url: str) -> None:
    day = _today() - timedelta(days=3)
    store = Store.open(url)
    execute(
        url,
        "INSERT INTO smtp (ts, client, client_port, server, server_port, trans_depth, helo,"
        ' mail_from, rcpt_to, refused_rcpt, subject, "from", "to", date, msg_id, user_agent,'
        " last_reply, tls, via_proxy, source) VALUES (:ts, '10.0.0.7', 40000, '192.0.2.25',"
        " 25, 1, '', '', '[]', '[]', '', '', '[]', '', '', '', '', FALSE, '', 'zeek')",
        ts=datetime.combine(day, time(10), tzinfo=UTC),
    )
    engine = make_engine(url)
    try:
        # A writer making partitions holds the lock: prune gives way to it, as writers do.
        with engine.begin() as holder:
            holder.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PARTITION_LOCK})")
            prune(store, 5)
            assert day not in _days(url, "smtp")
            assert _in_default(url, "smtp") == 1
        prune(store, 5)
    finally:
        engine.dispose()
        store.close()
    assert _days(url, "smtp") == {day}
    assert _in_default(url, "smtp") == 0


def test_prune_gives_way_to_a_reader_of_the_table_and_tries_again(url: str) -> None:
    today = _today()
    _write(url, [_mail(today - timedelta(days=10)), _mail(today)])
    engine = make_engine(url)
    store = Store.open(url)
    done: list[object] = []
    thread = threading.Thread(target=lambda: done.append(prune(store, 5)))
    try:
        with engine.begin() as reader:
            # A long read of smtp: prune's detach waits on it, LOCK_TIMEOUT at a time.
            assert reader.exec_driver_sql("SELECT count(*) FROM smtp").scalar() == 2
            thread.start()
            thread.join(timeout=float(LOCK_TIMEOUT.removesuffix("s")) + 1)
            assert thread.is_alive()
            assert done == []
            # Meanwhile other readers of smtp wait on the prune at most LOCK_TIMEOUT.
            with engine.connect() as other:
                other.exec_driver_sql("SET lock_timeout = '10s'")
                assert other.exec_driver_sql("SELECT count(*) FROM smtp").scalar() == 2
        thread.join(timeout=60)
    finally:
        engine.dispose()
    store.close()
    assert len(done) == 1
    assert _days(url, "smtp") == {today}
    assert query(url, "SELECT count(*) FROM smtp") == [(1,)]


def test_migration_0010_partitions_an_inventory_with_rows_and_keeps_them(url: str) -> None:
    engine = make_engine(database_url(url))
    upgrade_schema(engine, "0009")
    engine.dispose()
    recent = _today() - timedelta(days=3)
    for day in (recent, date(1990, 1, 1)):
        execute(
            url,
            "INSERT INTO flow (client, server, server_port, transport, day, source, connections,"
            " packets, bytes, first_seen, last_seen, answered, seq) VALUES ('10.0.0.7',"
            " '192.0.2.25', 25, 'tcp', :day, 'zeek', 3, 30, 3000, :at, :at, TRUE, 1)",
            day=day,
            at=datetime.combine(day, time(1), tzinfo=UTC),
        )
    execute(
        url,
        "INSERT INTO smtp (ts, client, client_port, server, server_port, trans_depth, helo,"
        ' mail_from, rcpt_to, refused_rcpt, subject, "from", "to", date, msg_id, user_agent,'
        " last_reply, tls, via_proxy, source) VALUES (:ts, '10.0.0.7',"
        " 40000, '192.0.2.25', 25, 1, 'h', 'a@b', '[]', '[]', 's', '', '[]', '', '', '', '',"
        " FALSE, '', 'zeek')",
        ts=datetime.combine(recent, time(10), tzinfo=UTC),
    )

    store = Store.open(url)
    with store.writer() as writer:
        writer.add(_mail(recent, port=40001))
    store.close()

    assert query(url, "SELECT version_num FROM alembic_version") == [(SCHEMA_HEAD,)]
    assert sorted(query(url, "SELECT day, connections FROM flow")) == [
        (date(1990, 1, 1), 3),
        (recent, 3),
    ]
    assert _days(url, "flow") == _days(url, "smtp") == {recent}
    assert _in_default(url, "flow") == 1  # 1990: outside the window
    assert query(url, "SELECT count(*), count(DISTINCT id) FROM smtp") == [(2, 2)]


INGESTS = 3
CONNS_PER_DAY = 4000
MAILS_PER_DAY = 400
INGEST_DAYS = (4, 3, 1, 0)  # days ago, all inside a 5-day window; 4 has no partition yet


def _zeek_logs(folder: Path, net: int, today: date) -> Path:
    """Conn and smtp logs of INGEST_DAYS, clients 10.NET.x.y (each ingest its own hosts)."""
    folder.mkdir()
    conns, mails = [tsv_header("conn")], [tsv_header("smtp")]
    for ago in INGEST_DAYS:
        start = datetime.combine(today - timedelta(days=ago), time(1), tzinfo=UTC).timestamp()
        for n in range(CONNS_PER_DAY):
            address = f"10.{net}.{n // 250}.{n % 250 + 1}"
            at = f"{start + n:.6f}"
            conns.append(
                tsv_line(
                    "conn",
                    {
                        "ts": at,
                        "uid": f"C{net}x{ago}x{n}",
                        "id.orig_h": address,
                        "id.orig_p": str(40000 + n % 20000),
                        "id.resp_h": "192.0.2.25",
                        "id.resp_p": "25",
                        "proto": "tcp",
                        "conn_state": "SF",
                        "orig_pkts": "3",
                        "resp_pkts": "2",
                        "orig_ip_bytes": "300",
                        "resp_ip_bytes": "200",
                    },
                )
            )
            if n < MAILS_PER_DAY:
                mails.append(
                    tsv_line(
                        "smtp",
                        {
                            "ts": at,
                            "uid": f"C{net}x{ago}x{n}",
                            "id.orig_h": address,
                            "id.orig_p": str(40000 + n % 20000),
                            "id.resp_h": "192.0.2.25",
                            "id.resp_p": "25",
                            "trans_depth": "1",
                            "mailfrom": f"a{n}@example.org",
                            "rcptto": "b@example.org",
                        },
                    )
                )
    (folder / "conn.log").write_text("".join(conns), encoding="utf-8")
    (folder / "smtp.log").write_text("".join(mails), encoding="utf-8")
    return folder


def _rolecall(*args: str) -> subprocess.Popen[str]:
    """Start a rolecall command."""
    return subprocess.Popen(
        [*ROLECALL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_a_prune_while_ingests_write_loses_nothing_that_stays(url: str, tmp_path: Path) -> None:
    today = _today()
    old = [today - timedelta(days=ago) for ago in (10, 9)]
    kept = [today - timedelta(days=ago) for ago in (2, 1)]
    _write(url, [record for day in old + kept for record in (_mail(day), _flow(day))])
    # Rows of a window day without its partition (as a writer that gave way leaves them):
    # the prune makes that day's partition while the ingests want to make it too.
    split = today - timedelta(days=4)
    for port in (41000, 41001):
        execute(
            url,
            "INSERT INTO smtp (ts, client, client_port, server, server_port, trans_depth, helo,"
            ' mail_from, rcpt_to, refused_rcpt, subject, "from", "to", date, msg_id,'
            " user_agent, last_reply, tls, via_proxy, source) VALUES (:ts, '10.0.0.9', :port,"
            " '192.0.2.25', 25, 1, '', '', '[]', '[]', '', '', '[]', '', '', '', '', FALSE, '',"
            " 'zeek')",
            ts=datetime.combine(split, time(9), tzinfo=UTC),
            port=port,
        )
    assert split not in _days(url, "smtp")
    config = tmp_path / "rolecall.toml"
    config.write_text("[retention]\ndays = 5\n", encoding="utf-8")
    folders = [_zeek_logs(tmp_path / f"zeek-{net}", net, today) for net in range(1, INGESTS + 1)]

    ingests = [_rolecall("--db", url, "-q", "ingest", "zeek", str(folder)) for folder in folders]
    prunes: list[tuple[str, str]] = []
    while any(ingest.poll() is None for ingest in ingests) or not prunes:
        prune_run = _rolecall("--config", str(config), "--db", url, "prune")
        prunes.append(prune_run.communicate(timeout=300))
        assert prune_run.returncode == 0, prunes[-1]
    for ingest in ingests:
        out, err = ingest.communicate(timeout=600)
        assert ingest.returncode == 0, (out, err)
    assert "run " in prunes[0][0]

    store = Store.open(url)
    prune(store, 5)  # after the ingests: whatever gave way is in its day's partition now
    store.close()
    window = set(kept) | {today - timedelta(days=ago) for ago in INGEST_DAYS}
    assert _days(url, "smtp") == _days(url, "flow") == window
    assert _in_default(url, "smtp") == _in_default(url, "flow") == 0
    mails = INGESTS * len(INGEST_DAYS) * MAILS_PER_DAY + len(kept) + 2
    assert query(url, "SELECT count(*) FROM smtp") == [(mails,)]
    cutoff = day_start(today - timedelta(days=5))
    assert query(url, "SELECT count(*) FROM smtp WHERE ts < :cutoff", cutoff=cutoff) == [(0,)]
    conns = INGESTS * len(INGEST_DAYS) * CONNS_PER_DAY
    assert query(url, "SELECT sum(connections) FROM flow WHERE client LIKE '10.0.0.%'") == [
        (len(kept),)
    ]
    assert query(url, "SELECT sum(connections) FROM flow WHERE client NOT LIKE '10.0.0.%'") == [
        (conns,)
    ]
    runs = query(url, "SELECT kind, status FROM run ORDER BY id")
    assert {status for _, status in runs} == {"ok"}
    assert sum(1 for kind, _ in runs if kind.startswith("ingest")) == INGESTS
