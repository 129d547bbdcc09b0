"""Daily series, the surge baseline, retention, "what changed", and derivation's idempotence."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from rolecall.inventory.changes import changes_between
from rolecall.inventory.history import daily_points
from rolecall.inventory.store import Store
from tests.cli_helpers import run_cli
from tests.data_paths import CONFORMANCE
from tests.findings_helpers import cli, findings, write_config
from tests.inventory_sql import query
from tests.zeek_helpers import write_tsv

START = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)


def _smtp_row(day: int, client: str, n: int) -> dict[str, str]:
    """One smtp.log line: `client` sends on day `day` after START."""
    ts = START + timedelta(days=day, minutes=n)
    return {
        "ts": f"{ts.timestamp():.6f}",
        "uid": f"C{day}x{n}",
        "id.orig_h": client,
        "id.orig_p": str(40000 + n),
        "id.resp_h": "10.9.0.25",
        "id.resp_p": "25",
        "trans_depth": "1",
        "helo": "pc",
        "mailfrom": "a@corp.test",
        "rcptto": "b@corp.test",
        "user_agent": "Thunderbird",
        "last_reply": "250 OK",
        "tls": "F",
    }


def _zeek_days(tmp_path: Path, clients_per_day: list[int]) -> Path:
    """smtp.log files, one directory per day, with that many distinct clients each day."""
    root = tmp_path / "zeek"
    for day, count in enumerate(clients_per_day):
        folder = root / (START + timedelta(days=day)).date().isoformat()
        folder.mkdir(parents=True)
        rows = [_smtp_row(day, f"10.1.0.{n + 1}", n) for n in range(count)]
        write_tsv(folder / "smtp.log", "smtp", rows)
    return root


CONFIG = '[[groups]]\nname = "office"\nnetworks = ["10.1.0.0/24"]\n'
BASELINE = [3, 4, 3, 4, 5, 3, 4, 3, 4, 4, 3, 5, 4, 3]


def test_a_surge_of_smtp_clients_is_explained_against_its_baseline(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    config = write_config(tmp_path, CONFIG)
    cli(capsys, database, config, "ingest", "zeek", str(_zeek_days(tmp_path, [*BASELINE, 20])))
    found = findings(capsys, database, config)
    surge = found["smtp-client-surge", "*"]
    day = (START + timedelta(days=len(BASELINE))).date()
    assert surge["summary"].startswith(f"20 distinct SMTP clients network-wide on {day}")
    assert "baseline median of 4 (MAD 1) over the previous 14 days; more than 8" in surge["summary"]
    assert ("smtp-client-surge", "group:office") in found
    store = Store.open(database)
    with store.read("read rows") as connection:
        points = daily_points(connection, "smtp_clients", 20, day + timedelta(days=2))
        office = daily_points(connection, "smtp_clients", 3, day, group="office")
    store.close()
    assert [p.value for p in points] == [0, 0, 0, *BASELINE, 20, 0, 0]
    assert points[3].median is None  # no history before the first day
    assert points[3 + 7].median is not None
    assert points[3 + 7].median > 0
    surge_day = points[3 + len(BASELINE)]
    assert surge_day.median == 4
    assert surge_day.high is not None
    assert surge_day.value > surge_day.high
    assert [p.value for p in office] == [4, 3, 20]


def test_an_ordinary_day_raises_no_surge(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    cli(capsys, database, None, "ingest", "zeek", str(_zeek_days(tmp_path, [*BASELINE, 6])))
    assert not [key for key in findings(capsys, database) if key[0] == "smtp-client-surge"]


def test_firewall_denies_per_day_and_retention(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    config = write_config(tmp_path, CONFIG + "[history]\nretention_days = 10\n")
    log = tmp_path / "kern.log"
    line = (
        "{stamp} gw kernel: RC-DENY IN=eth1 OUT=eth0 SRC=10.1.0.{host} DST=203.0.113.5"
        " LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID=1 DF PROTO=TCP SPT=4000{n} DPT=25 WINDOW=64240"
        " RES=0x00 SYN URGP=0\n"
    )
    stamps = [("2026-11-01T03:00:0{n}+0000", 2), ("2026-11-02T03:00:0{n}+0000", 3)]
    log.write_text(
        "".join(
            line.format(stamp=stamp.format(n=n), host=7, n=n)
            for stamp, count in stamps
            for n in range(count)
        )
    )
    cli(capsys, database, config, "ingest", "firewall", str(log))
    cli(capsys, database, config, "ingest", "zeek", str(_zeek_days(tmp_path, BASELINE)))
    later = tmp_path / "kern.2.log"
    later.write_text(line.format(stamp="2026-11-03T03:00:00+0000", host=8, n=0))
    cli(capsys, database, config, "ingest", "firewall", str(later))
    cli(capsys, database, config, "findings", "derive")
    store = Store.open(database)
    with store.read("read rows") as connection:
        denies = daily_points(connection, "fw_smtp_denies", 3, date(2026, 11, 3))
        office = daily_points(connection, "fw_smtp_denies", 3, date(2026, 11, 3), "office")
        clients = daily_points(connection, "smtp_clients", 14, date(2026, 10, 14))
    store.close()
    assert [p.value for p in denies] == [2, 3, 1]
    assert [p.value for p in office] == [2, 3, 1]
    # Kept for 10 days before the newest day (2026-11-03): October's early days are gone.
    assert [p.value for p in clients][:10] == [0] * 10


def _tables(db: str) -> dict[str, list[tuple[object, ...]]]:
    """The derived tables' contents, without row ids."""
    queries = {
        "role": "SELECT address, role, source, evidence, first_seen, last_seen FROM role",
        "finding": "SELECT rule, address, severity, summary, evidence, first_seen, last_seen,"
        " status FROM finding",
        "asset_group": "SELECT address, name FROM asset_group",
        "daily_metric": "SELECT metric, grp, day, value FROM daily_metric",
    }
    return {name: sorted(query(db, sql)) for name, sql in queries.items()}


def test_incremental_derivation_equals_a_full_one_and_is_idempotent(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    config = write_config(tmp_path, CONFIG)
    root = _zeek_days(tmp_path, [*BASELINE, 20])
    for part in sorted(root.iterdir()):
        cli(capsys, database, config, "ingest", "zeek", str(part))
    for case in ("smtp-basic", "socks-trace1", "socks-auth"):
        cli(capsys, database, config, "ingest", "pcap", str(CONFORMANCE / case / "trace.pcap"))
    cli(capsys, database, config, "findings", "derive")
    incremental = _tables(database)
    cli(capsys, database, config, "findings", "derive")
    assert _tables(database) == incremental
    assert "full" in cli(capsys, database, config, "findings", "derive", "--full").out
    assert _tables(database) == incremental
    assert incremental["finding"]
    assert incremental["asset_group"]


def test_what_changed_between_two_points_in_time(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    cli(capsys, database, None, "ingest", "zeek", str(_zeek_days(tmp_path, [*BASELINE, 20])))
    store = Store.open(database)
    surge_day = START + timedelta(days=len(BASELINE))
    since = surge_day.replace(hour=0)
    with store.read("read rows") as connection:
        changes = changes_between(connection, since, since + timedelta(days=1))
    store.close()
    newcomers = {f"10.1.0.{n}" for n in range(6, 21)}
    assert set(changes.new_assets) == newcomers
    assert {address for address, role in changes.new_roles if role == "smtp-client"} == newcomers
    assert {(f.rule, f.address) for f in changes.new_findings} == {
        ("smtp-client-surge", "*"),
        *(("new-smtp-client", address) for address in newcomers),
    }
    assert ("smtp-client-surge", "*") in [(f.rule, f.address) for f in changes.open_findings]
    assert changes.lost_roles == []


def test_history_show_prints_each_day_with_its_band(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    cli(capsys, database, None, "ingest", "zeek", str(_zeek_days(tmp_path, [*BASELINE, 20])))
    day = (START + timedelta(days=len(BASELINE))).date()
    args = ("history", "show", "smtp_clients", "--days", "2", "--until", day.isoformat())
    lines = cli(capsys, database, None, *args).out.splitlines()
    assert lines[0].split() == ["day", "value", "median", "MAD", "low", "high", "threshold"]
    assert lines[1].split() == [f"{day - timedelta(days=1)}", "3", "4", "1", "0.0", "8.4", "9"]
    assert lines[2].split() == [f"{day}", "20", "4", "1", "0.0", "8.4", "9", "surge"]
    assert lines[3].startswith(
        "baseline: median and MAD of the previous 28 days (once there are 7)"
    )
    assert lines[4].startswith("threshold: the least value above the band and at least 3 over")
    bad = run_cli(capsys, "--db", database, "history", "show", "spam")
    assert bad.code == 2


def test_a_role_that_stopped_while_its_host_went_on_is_lost(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    """10.2.0.9 answered on port 80 on day 1 only, and was still browsing on day 5."""

    def conn(client: str, server: str, when: datetime) -> dict[str, str]:
        row = {"ts": f"{when.timestamp():.6f}", "uid": "C1", "id.orig_h": client}
        row |= {"id.orig_p": "40000", "id.resp_h": server, "id.resp_p": "80", "proto": "tcp"}
        row |= {"conn_state": "SF", "orig_pkts": "5", "resp_pkts": "4", "orig_bytes": "100"}
        row |= {"resp_bytes": "600", "orig_ip_bytes": "400", "resp_ip_bytes": "900"}
        return row | {"tunnel_parents": "(empty)"}

    day5 = START + timedelta(days=4)
    rows = [conn("10.2.0.1", "10.2.0.9", START), conn("10.2.0.9", "198.51.100.80", day5)]
    cli(
        capsys,
        database,
        None,
        "ingest",
        "zeek",
        str(write_tsv(tmp_path / "conn.log", "conn", rows)),
    )
    store = Store.open(database)
    since = day5.replace(hour=0)
    with store.read("read rows") as connection:
        changes = changes_between(connection, since, since + timedelta(days=1))
        before = changes_between(connection, START.replace(hour=0), since)
    store.close()
    assert changes.lost_roles == [("10.2.0.9", "web-server")]
    assert ("10.2.0.9", "web-client") in changes.new_roles
    assert changes.new_assets == ["198.51.100.80"]
    assert ("10.2.0.9", "web-server") in before.new_roles
    assert before.lost_roles == []


def _conn_row(client: str, server: str, port: int, n: int) -> dict[str, str]:
    """One conn.log line: a TCP connection on the first day after START."""
    ts = START + timedelta(minutes=n)
    row = {"ts": f"{ts.timestamp():.6f}", "uid": f"F{n}", "id.orig_h": client}
    row |= {"id.orig_p": str(41000 + n), "id.resp_h": server, "id.resp_p": str(port)}
    row |= {"proto": "tcp", "conn_state": "SF", "orig_pkts": "5", "resp_pkts": "4"}
    row |= {"orig_ip_bytes": "400", "resp_ip_bytes": "900", "orig_bytes": "100"}
    return row | {"resp_bytes": "600", "tunnel_parents": "(empty)"}


def test_smtp_connections_count_every_port_smtp_was_seen_on(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    folder = tmp_path / "zeek"
    folder.mkdir()
    mail = _smtp_row(0, "10.1.0.1", 0) | {"id.resp_p": "2525"}
    write_tsv(folder / "smtp.log", "smtp", [mail])
    conns = [_conn_row("10.1.0.1", "10.9.0.25", 2525, n) for n in range(2)]
    conns.append(_conn_row("10.1.0.1", "10.9.0.25", 25, 2))
    # The same server's other port, where no SMTP was seen, is not mail.
    conns += [_conn_row("10.1.0.1", "10.9.0.25", 2526, n) for n in range(3, 6)]
    write_tsv(folder / "conn.log", "conn", conns)
    cli(capsys, database, None, "ingest", "zeek", str(folder))
    store = Store.open(database)
    with store.read("read rows") as connection:
        points = daily_points(connection, "smtp_connections", 1, START.date())
    store.close()
    assert [point.value for point in points] == [3]


def test_days_far_apart_are_each_counted_in_a_full_derivation(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    # Seventy days: more than one read's worth (history.PASS_DAYS), mail on a few of them,
    # port-25 connections on two days that fall in different reads.
    counts = [0] * 70
    for day, senders in ((0, 2), (20, 3), (31, 4), (45, 1), (69, 5)):
        counts[day] = senders
    root = _zeek_days(tmp_path, counts)
    conns = [_conn_row("10.1.0.7", "10.9.0.25", 25, n) for n in range(2)]
    late = START + timedelta(days=45)
    conns += [
        _conn_row("10.1.0.8", "10.9.0.25", 25, n) | {"ts": f"{late.timestamp() + n:.6f}"}
        for n in range(2, 5)
    ]
    (root / "conns").mkdir()
    write_tsv(root / "conns" / "conn.log", "conn", conns)
    config = write_config(tmp_path, CONFIG)
    cli(capsys, database, config, "ingest", "zeek", str(root))
    cli(capsys, database, config, "findings", "derive", "--full")
    store = Store.open(database)
    last = (START + timedelta(days=69)).date()
    with store.read("read rows") as connection:
        clients = daily_points(connection, "smtp_clients", 70, last)
        office = daily_points(connection, "smtp_clients", 70, last, group="office")
        connections = daily_points(connection, "smtp_connections", 70, last)
    store.close()
    assert [point.value for point in clients] == counts
    assert [point.value for point in office] == counts
    # Connections come from the conn.log alone: two on the first day, three on day 45.
    assert {point.day: point.value for point in connections if point.value} == {
        START.date(): 2,
        late.date(): 3,
    }
