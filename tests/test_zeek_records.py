"""Zeek log lines mapped to records, in TSV and in JSON."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

from rolecall.probes.passive.zeek.log_format import zeek_files
from rolecall.probes.passive.zeek.records import ZeekSettings, read_zeek
from rolecall.probes.records import (
    Flow,
    HostName,
    Observation,
    Service,
    SmtpTransaction,
    SocksRequest,
)
from tests.zeek_helpers import (
    SMTP_LINE,
    SOCKS_LINE,
    T0,
    gzip_copy,
    split_items,
    write_json,
    write_tsv,
)

T0_TIME = datetime(2026, 11, 23, 0, 0, 0, 250000, tzinfo=UTC)


def conn(client: str, server: str, ts: str, **extra: str) -> dict[str, str]:
    """A conn.log row for a TCP connection to port 25."""
    row = {"ts": ts, "uid": "C1", "id.orig_h": client, "id.orig_p": "40000"}
    row |= {"id.resp_h": server, "id.resp_p": "25", "proto": "tcp", "conn_state": "SF"}
    row |= {"orig_pkts": "5", "resp_pkts": "4", "orig_ip_bytes": "400", "resp_ip_bytes": "900"}
    row |= {"orig_bytes": "100", "resp_bytes": "600", "tunnel_parents": "(empty)"}
    return row | extra


def read(path: Path, **settings: object) -> tuple[list[object], list[object]]:
    """Read a log with the given settings."""
    records, warnings = split_items(read_zeek(path, ZeekSettings(**settings)))  # type: ignore[arg-type]
    return list(records), list(warnings)


def test_conn_lines_aggregate_into_daily_flows(tmp_path: Path) -> None:
    rows = [
        conn("192.0.2.1", "198.51.100.9", T0),
        conn("192.0.2.1", "198.51.100.9", "1795392060.5"),
        conn("192.0.2.1", "198.51.100.9", "1795478400.0"),  # the next UTC day
        conn(
            "192.0.2.2",
            "198.51.100.9",
            T0,
            conn_state="S0",
            resp_pkts="0",
            resp_ip_bytes="0",
            orig_ip_bytes="-",
            resp_bytes="-",
        ),
    ]
    records, warnings = read(write_tsv(tmp_path / "conn.log", "conn", rows))
    assert warnings == []
    flows = sorted(records, key=lambda f: (f.client, f.day))  # type: ignore[attr-defined]
    assert flows == [
        Flow(
            "192.0.2.1",
            "198.51.100.9",
            25,
            "tcp",
            date(2026, 11, 23),
            "zeek",
            T0_TIME,
            datetime(2026, 11, 23, 0, 1, 0, 500000, tzinfo=UTC),
            connections=2,
            packets=18,
            bytes=2600,
            answered=True,
        ),
        Flow(
            "192.0.2.1",
            "198.51.100.9",
            25,
            "tcp",
            date(2026, 11, 24),
            "zeek",
            datetime(2026, 11, 24, tzinfo=UTC),
            datetime(2026, 11, 24, tzinfo=UTC),
            connections=1,
            packets=9,
            bytes=1300,
            answered=True,
        ),
        Flow(
            "192.0.2.2",
            "198.51.100.9",
            25,
            "tcp",
            date(2026, 11, 23),
            "zeek",
            T0_TIME,
            T0_TIME,
            connections=1,
            packets=5,
            bytes=100,  # no IP-level counters: payload bytes
            answered=False,
        ),
    ]


def test_rejected_connections_count_as_answered(tmp_path: Path) -> None:
    rows = [conn("192.0.2.3", "198.51.100.9", T0, conn_state="REJ", resp_pkts="-")]
    records, _ = read(write_tsv(tmp_path / "conn.log", "conn", rows))
    assert [f.answered for f in records] == [True]  # type: ignore[attr-defined]


def test_the_flow_cap_bounds_memory_and_totals_add_up(tmp_path: Path) -> None:
    rows = [conn(f"192.0.2.{i % 50}", "198.51.100.9", f"{1795392000 + i}.0") for i in range(1000)]
    records, _ = read(write_tsv(tmp_path / "conn.log", "conn", rows), flow_cap=10)
    flows = [r for r in records if isinstance(r, Flow)]
    assert len(flows) > 50  # flushed early, more than once per key
    assert sum(f.connections for f in flows) == 1000
    assert sum(f.packets for f in flows) == 9000
    assert {f.client for f in flows} == {f"192.0.2.{i}" for i in range(50)}


def test_a_full_aggregate_gives_up_past_days_then_the_least_used_flows(tmp_path: Path) -> None:
    day = 1795392000
    # day one: 8 clients, twice each; day two: a busy client, then 16 clients seen once
    rows = [conn(f"192.0.2.{i % 8}", "198.51.100.9", f"{day + i}.0") for i in range(16)]
    rows += [conn("192.0.2.99", "198.51.100.9", f"{day + 86400 + i}.0") for i in range(5)]
    rows += [conn(f"192.0.2.{i}", "198.51.100.9", f"{day + 86500 + i}.0") for i in range(16)]
    records, _ = read(write_tsv(tmp_path / "conn.log", "conn", rows), flow_cap=10)
    flows = [r for r in records if isinstance(r, Flow)]
    first_day = [f for f in flows if f.day == date(2026, 11, 23)]
    assert sorted(f.client for f in first_day) == [f"192.0.2.{i}" for i in range(8)]
    assert {f.connections for f in first_day} == {2}  # each flushed once, whole
    (busy,) = [f for f in flows if f.client == "192.0.2.99"]
    assert busy.connections == 5  # kept aggregating while quieter flows were flushed
    assert len(flows) == 8 + 1 + 16
    assert sum(f.connections for f in flows) == 37


def test_a_day_s_flows_are_given_out_an_hour_into_the_next(tmp_path: Path) -> None:
    day = 1795392000
    rows = [
        conn("192.0.2.1", "198.51.100.9", f"{day + 10}.0"),
        conn("192.0.2.2", "198.51.100.9", f"{day + 20}.0"),
        conn("192.0.2.3", "198.51.100.9", f"{day + 86400 + 10}.0"),  # a new day begins
        conn("192.0.2.4", "198.51.100.9", f"{day + 86400 + 3700}.0"),  # an hour into it
        conn("not-an-address", "198.51.100.9", f"{day + 86400 + 3800}.0"),  # line 13
        conn("192.0.2.1", "198.51.100.9", f"{day + 86000}.0"),  # late, for the day before
    ]
    items = list(read_zeek(write_tsv(tmp_path / "conn.log", "conn", rows), ZeekSettings()))
    seen = [(i.client, i.day.day) if isinstance(i, Flow) else i.where[-2:] for i in items]  # type: ignore[union-attr]
    assert seen == [
        ("192.0.2.1", 23),
        ("192.0.2.2", 23),
        "13",
        ("192.0.2.3", 24),
        ("192.0.2.4", 24),
        ("192.0.2.1", 23),  # the store adds it to the row written before
    ]


def test_an_address_written_two_ways_is_one_flow(tmp_path: Path) -> None:
    rows = [
        conn("2001:db8::1", "2001:db8::25", T0),
        conn("2001:DB8:0::1", "2001:0db8::25", T0),
        conn("2001:db8::1", "2001:db8::25", T0),
    ]
    records, warnings = read(write_tsv(tmp_path / "conn.log", "conn", rows))
    assert warnings == []
    assert [(f.client, f.server, f.connections) for f in records] == [  # type: ignore[attr-defined]
        ("2001:db8::1", "2001:db8::25", 3)
    ]


def test_counters_past_what_the_store_holds_are_warned(tmp_path: Path) -> None:
    big = str(2**62)
    rows = [
        conn("192.0.2.1", "198.51.100.9", T0, orig_ip_bytes=big),
        conn("192.0.2.1", "198.51.100.9", T0, orig_ip_bytes=big),  # the sum passes 2**63 - 1
        conn("192.0.2.2", "198.51.100.9", T0, resp_ip_bytes=str(2**64)),
    ]
    records, warnings = read(write_tsv(tmp_path / "conn.log", "conn", rows))
    assert [w.where.rsplit(":", 1)[1] for w in warnings] == ["10", "11"]  # type: ignore[attr-defined]
    assert [(f.client, f.connections, f.bytes) for f in records] == [  # type: ignore[attr-defined]
        ("192.0.2.1", 1, 2**62 + 900)
    ]


def test_bad_addresses_and_times_are_warned_with_their_line(tmp_path: Path) -> None:
    rows = [
        conn("192.0.2.1", "198.51.100.9", T0),
        conn("not-an-address", "198.51.100.9", T0),
        conn("192.0.2.1", "198.51.100.9", "XXXXXXXXXX.XXXXXX"),
        conn("192.0.2.1", "198.51.100.9", "99999999999999.0"),
        conn("192.0.2.1", "198.51.100.9", "-1e20"),
        conn("192.0.2.1", "198.51.100.9", "nan"),
        conn("192.0.2.1", "198.51.100.9", "inf"),
        conn("fe80::1%eth0", "198.51.100.9", T0),  # a zone id: not an address column's
    ]
    path = write_tsv(tmp_path / "conn.log", "conn", rows)
    records, warnings = read(path)
    assert len(records) == 1
    lines = [w.where.rsplit(":", 1)[1] for w in warnings]  # type: ignore[attr-defined]
    assert lines == ["10", "11", "12", "13", "14", "15", "16"]
    assert "'not-an-address' is not an IP address" in warnings[0].message  # type: ignore[attr-defined]
    assert "'fe80::1%eth0' is not an IP address" in warnings[-1].message  # type: ignore[attr-defined]
    smtp = write_tsv(tmp_path / "smtp.log", "smtp", [SMTP_LINE | {"ts": "99999999999999.5"}])
    records, warnings = read(smtp)
    assert records == []
    assert "out of range" in warnings[0].message  # type: ignore[attr-defined]


SMTP_RECORD = SmtpTransaction(
    ts=T0_TIME,
    client="192.0.2.10",
    client_port=40001,
    server="198.51.100.25",
    server_port=25,
    source="zeek",
    trans_depth=2,
    helo="ws1.example.org",
    mail_from="a@example.org",
    rcpt_to=("b@example.net", "c@example.net"),
    subject="Offer",
    from_="A <a@example.org>",
    to=("<b@example.net>",),
    date="Mon, 23 Nov 2026 00:00:00 +0000",
    msg_id="<1@example.org>",
    user_agent="The Bat! (v9.4.2)",
    last_reply="250 2.0.0 Ok",
    tls=True,
)


def as_json(row: dict[str, str], sets: tuple[str, ...] = ()) -> dict[str, object]:
    """The JSON object Zeek writes for a TSV row (typed values, unset fields left out)."""
    out: dict[str, object] = {}
    for key, value in row.items():
        if key in sets:
            out[key] = value.split(",")
        elif key == "ts":
            out[key] = float(value)
        elif value.isdigit():  # counts and ports are JSON numbers
            out[key] = int(value)
        elif value in ("T", "F"):
            out[key] = value == "T"
        elif value != "-":
            out[key] = value
    return out


def test_smtp_lines_become_transactions_in_tsv_and_json(tmp_path: Path) -> None:
    tsv, _ = read(write_tsv(tmp_path / "smtp.log", "smtp", [SMTP_LINE]))
    body = as_json(SMTP_LINE, ("rcptto", "to"))
    (tmp_path / "json").mkdir()
    jsonl, warnings = read(write_json(tmp_path / "json" / "smtp.log", [body]))
    assert warnings == []
    assert tsv == jsonl == [SMTP_RECORD]


def test_json_iso_timestamps_are_read(tmp_path: Path) -> None:
    body = as_json(SMTP_LINE, ("rcptto", "to")) | {"ts": "2026-11-23T00:00:00.250000Z"}
    records, _ = read(write_json(tmp_path / "smtp.log", [body]))
    assert records == [SMTP_RECORD]


def test_socks_passwords_are_kept_only_when_asked(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "socks.log", "socks", [SOCKS_LINE])
    (plain,), _ = read(path)
    (kept,), _ = read(path, keep_passwords=True)
    expected = SocksRequest(
        T0_TIME, "192.0.2.10", 40002, "198.51.100.80", 1080, "zeek", 5, "bob", "", "succeeded"
    )
    expected_full = SocksRequest(
        T0_TIME,
        "192.0.2.10",
        40002,
        "198.51.100.80",
        1080,
        "zeek",
        5,
        user="bob",
        password="alice",
        status="succeeded",
        request_name="www.example.com",
        request_port=80,
        bound_host="198.51.100.80",
        bound_port=55951,
    )
    assert (plain.user, plain.password) == (expected.user, "")  # type: ignore[attr-defined]
    assert kept == expected_full


def test_software_services_and_hosts(tmp_path: Path) -> None:
    soft = {"ts": T0, "host": "192.0.2.20", "host_p": "-", "name": "The Bat!"}
    rows = [
        soft | {"software_type": "SMTP::MAIL_CLIENT", "version.major": "9", "version.minor": "4"},
        soft
        | {"software_type": "HTTP::BROWSER", "name": "Firefox", "version.major": "120"}
        | {"version.minor": "0", "version.minor2": "1", "unparsed_version": "Mozilla/5.0 x"},
    ]
    records, _ = read(write_tsv(tmp_path / "software.log", "software", rows))
    assert [(r.kind, r.value, r.port) for r in records] == [  # type: ignore[attr-defined]
        ("mail-client-software", "SMTP::MAIL_CLIENT:The Bat! 9.4", 0),
        ("software", "HTTP::BROWSER:Firefox 120.0.1", 0),
    ]
    assert json.loads(records[1].detail) == {"unparsed_version": "Mozilla/5.0 x"}  # type: ignore[attr-defined]
    services = {"ts": T0, "host": "192.0.2.21", "port_num": "443", "port_proto": "tcp"}
    path = write_tsv(
        tmp_path / "known_services.log", "known_services", [services | {"service": "SSL,HTTP"}]
    )
    assert read(path)[0] == [Service("192.0.2.21", 443, "tcp", "zeek", T0_TIME, "http,ssl")]
    path = write_tsv(
        tmp_path / "known_hosts.log", "known_hosts", [{"ts": T0, "host": "192.0.2.22"}]
    )
    assert read(path)[0] == [Observation("192.0.2.22", "host-up", "zeek", T0_TIME)]


def test_dns_http_and_ssl_observations(tmp_path: Path) -> None:
    ids = {"ts": T0, "id.orig_h": "192.0.2.30", "id.orig_p": "5353"}
    dns = ids | {"id.resp_h": "192.0.2.53", "id.resp_p": "53", "proto": "udp"}
    rows = [
        dns
        | {"query": "WWW.Example.com", "qtype_name": "A", "rcode_name": "NOERROR"}
        | {"answers": "cdn.example.net,203.0.113.7,203.0.113.8"},
        dns | {"query": "example.net", "qtype_name": "MX", "answers": "mx.example.net"},
    ]
    records, warnings = read(write_tsv(tmp_path / "dns.log", "dns", rows))
    assert warnings == []
    names = [r for r in records if isinstance(r, HostName)]
    assert names == [
        HostName("203.0.113.7", "www.example.com", "zeek", T0_TIME),
        HostName("203.0.113.8", "www.example.com", "zeek", T0_TIME),
    ]
    observed = [
        (o.kind, o.address, o.port, o.transport, o.value)
        for o in records
        if isinstance(o, Observation)
    ]
    assert observed == [
        ("dns-query", "192.0.2.30", 53, "udp", "192.0.2.53"),
        ("dns-query", "192.0.2.30", 53, "udp", "192.0.2.53"),
        ("dns-mx-query", "192.0.2.30", 53, "udp", "example.net"),
    ]
    web = ids | {"id.resp_h": "198.51.100.80", "id.resp_p": "8080"}
    http = web | {"host": "Shop.Example.com", "user_agent": "curl/8.5.0"}
    records, _ = read(write_tsv(tmp_path / "http.log", "http", [http]))
    assert [(o.kind, o.address, o.port, o.value) for o in records] == [  # type: ignore[attr-defined]
        ("http-host", "198.51.100.80", 8080, "shop.example.com"),
        ("http-user-agent", "192.0.2.30", 8080, "curl/8.5.0"),
    ]
    ssl = web | {"id.resp_p": "443", "server_name": "Mail.Example.com"}
    records, _ = read(write_tsv(tmp_path / "ssl.log", "ssl", [ssl, web]))
    assert records == [
        Observation("198.51.100.80", "tls-sni", "zeek", T0_TIME, 443, "tcp", "mail.example.com")
    ]


def test_json_conn_lines_make_the_same_flows_as_tsv(tmp_path: Path) -> None:
    rows = [conn("192.0.2.1", "198.51.100.9", f"{1795392000 + i}.5") for i in range(5)]
    rows.append(conn("2001:DB8::1", "198.51.100.9", T0, proto="udp", conn_state="S0"))
    tsv, _ = read(write_tsv(tmp_path / "conn.log", "conn", rows))
    (tmp_path / "json").mkdir()
    bodies = [as_json(row, ("tunnel_parents",)) for row in rows]
    jsonl, warnings = read(write_json(tmp_path / "json" / "conn.log", bodies))
    assert warnings == []
    assert jsonl == tsv
    assert [f.client for f in tsv] == ["192.0.2.1", "2001:db8::1"]  # type: ignore[attr-defined]


def test_a_log_tree_reads_file_by_file(tmp_path: Path) -> None:
    day = tmp_path / "logs" / "2026-11-23"
    day.mkdir(parents=True)
    write_tsv(day / "smtp.00:00:00-01:00:00.log", "smtp", [SMTP_LINE])
    gzip_copy(day / "smtp.00:00:00-01:00:00.log", day / "smtp.01:00:00-02:00:00.log.gz")
    (day / "smtp.00:00:00-01:00:00.log").unlink()
    write_tsv(day / "conn.01:00:00-02:00:00.log", "conn", [conn("192.0.2.1", "198.51.100.9", T0)])
    write_tsv(day / "weird.01:00:00-02:00:00.log", "conn", [conn("192.0.2.1", "198.51.100.9", T0)])
    found = zeek_files([tmp_path / "logs"])
    assert [p.name for p in found] == [
        "conn.01:00:00-02:00:00.log",
        "smtp.01:00:00-02:00:00.log.gz",
    ]
    records = [r for path in found for r in read_zeek(path, ZeekSettings())]
    assert [type(r).__name__ for r in records] == ["Flow", "SmtpTransaction"]
    assert records[1] == SMTP_RECORD
