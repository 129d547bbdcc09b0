"""Zeek http.log CONNECT lines give the ConnectRequest records a capture gives, TSV and JSON.

Two lines are Zeek's own output (its btest baselines http-connect, a spam bot
tunnelling SMTP through an open proxy in 2004, and http-connect-with-header, a
browser; BSD licence, tests/data/conformance/zeek/COPYING.zeek); the others are
written with Zeek's header for the cases those do not cover.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rolecall.probes.passive.zeek.records import ZeekSettings, read_zeek
from rolecall.probes.records import ConnectRequest, Observation
from tests.cli_helpers import run_cli
from tests.zeek_helpers import fields_of, split_items, tsv_header, write_json, write_tsv

ZEEK_SPAMBOT = (
    "1078232252.284420\tCHhAvVGS1DHFjwGM9\t79.26.245.236\t3378\t254.228.86.79\t8240\t1\tCONNECT\t-"
    "\tmailin03.sul.t-online.de:25 /\t-\t1.0\t-\t-\t0\t0\t200\tConnection established\t-\t-"
    "\t(empty)\t-\t-\t-\t-\t-\t-\t-\t-\t-"
)
ZEEK_BROWSER = (
    "1443732977.727711\tCHhAvVGS1DHFjwGM9\t::1\t52522\t::1\t80\t1\tCONNECT\tsecure.newegg.com:443"
    "\tsecure.newegg.com:443\t-\t1.0\tMozilla/5.0 (Macintosh; Intel Mac OS X 10.10; rv:41.0) "
    "Gecko/20100101 Firefox/41.0\t-\t0\t0\t200\tConnection Established\t-\t-\t(empty)\t-\t-"
    "\tPROXY-CONNECTION -> keep-alive\t-\t-\t-\t-\t-\t-"
)
BOT, PROXY = "192.0.2.66", "198.51.100.3"
OURS: list[dict[str, str]] = [
    {
        "ts": "1795392000.5",
        "id.orig_h": BOT,
        "id.orig_p": "50001",
        "id.resp_h": PROXY,
        "id.resp_p": "3128",
        "method": "CONNECT",
        "uri": "mx.example.net:25",
        "status_code": "407",
        "status_msg": "Proxy Authentication Required",
    },
    {
        "ts": "1795392001.5",
        "id.orig_h": BOT,
        "id.orig_p": "50002",
        "id.resp_h": PROXY,
        "id.resp_p": "3128",
        "method": "CONNECT",
        "host": "[2001:db8::19]:25",
        "uri": "[2001:DB8::0019]:25",
        "status_code": "200",
        "username": "bob",
        "password": "s3cret",
    },
    {
        "ts": "1795392002.5",
        "id.orig_h": BOT,
        "id.orig_p": "50003",
        "id.resp_h": PROXY,
        "id.resp_p": "3128",
        "method": "CONNECT",
        "uri": "192.0.2.25:587",
    },
    {
        "ts": "1795392003.5",
        "id.orig_h": BOT,
        "id.orig_p": "50004",
        "id.resp_h": PROXY,
        "id.resp_p": "3128",
        "method": "GET",
        "host": "shop.example.com",
        "uri": "/",
        "status_code": "200",
    },
]


def at(seconds: float) -> datetime:
    """An epoch time as Zeek's reader gives it."""
    return datetime.fromtimestamp(seconds, UTC)


def http_log(tmp_path: Path) -> Path:
    """Zeek's two lines and ours in one TSV http.log."""
    path = write_tsv(tmp_path / "http.log", "http", OURS)
    head = tsv_header("http")
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace(head, head + ZEEK_SPAMBOT + "\n" + ZEEK_BROWSER + "\n"), encoding="utf-8"
    )
    return path


def connects(path: Path, keep: bool = False) -> list[ConnectRequest]:
    """The ConnectRequests read from a log, asserting it read without warnings."""
    records, warnings = split_items(read_zeek(path, ZeekSettings(keep_passwords=keep)))
    assert warnings == []
    return [r for r in records if isinstance(r, ConnectRequest)]


def test_tsv_connect_lines(tmp_path: Path) -> None:
    """Target from uri (else host), status, user; the password only with keep_passwords."""
    path = http_log(tmp_path)
    found = connects(path)
    assert found == [
        ConnectRequest(
            at(1078232252.28442),
            "79.26.245.236",
            3378,
            "254.228.86.79",
            8240,
            "zeek",
            status=200,
            request_host="mailin03.sul.t-online.de",
            request_port=25,
        ),
        ConnectRequest(
            at(1443732977.727711),
            "::1",
            52522,
            "::1",
            80,
            "zeek",
            status=200,
            request_host="secure.newegg.com",
            request_port=443,
        ),
        ConnectRequest(
            at(1795392000.5),
            BOT,
            50001,
            PROXY,
            3128,
            "zeek",
            status=407,
            request_host="mx.example.net",
            request_port=25,
        ),
        ConnectRequest(
            at(1795392001.5),
            BOT,
            50002,
            PROXY,
            3128,
            "zeek",
            user="bob",
            status=200,
            request_host="2001:db8::19",
            request_port=25,
        ),
        ConnectRequest(
            at(1795392002.5),
            BOT,
            50003,
            PROXY,
            3128,
            "zeek",
            request_host="192.0.2.25",
            request_port=587,
        ),
    ]
    assert [r.password for r in connects(path, keep=True)] == ["", "", "", "s3cret", ""]
    records, _ = split_items(read_zeek(path, ZeekSettings()))
    observed = [(o.kind, o.address, o.port, o.value) for o in records if isinstance(o, Observation)]
    # CONNECT's Host names the target, so it is not an http-host of the proxy; the GET's is
    assert observed == [
        ("http-connect", "254.228.86.79", 8240, "granted"),
        ("http-connect", "::1", 80, "granted"),
        (
            "http-user-agent",
            "::1",
            80,
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.10; rv:41.0) Gecko/20100101 Firefox/41.0",
        ),
        ("http-connect", PROXY, 3128, "auth-required"),
        ("http-connect", PROXY, 3128, "granted"),
        ("http-host", PROXY, 3128, "shop.example.com"),
    ]


def test_json_lines_give_the_same_records(tmp_path: Path) -> None:
    """Zeek's JSON writer (numbers as numbers, unset fields left out) reads as the TSV does."""
    tsv = http_log(tmp_path)
    rows: list[dict[str, object]] = []
    numeric = {"id.orig_p", "id.resp_p", "status_code", "trans_depth"}
    for line in tsv.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            continue
        row: dict[str, object] = {"_path": "http"}
        for name, value in zip(fields_of("http"), line.split("\t"), strict=True):
            if value == "-":
                continue
            if name == "ts":
                row[name] = float(value)
            elif name in numeric:
                row[name] = int(value)
            elif name == "tags":
                row[name] = []
            else:
                row[name] = value
        rows.append(row)
    (tmp_path / "json").mkdir()
    jsonl = write_json(tmp_path / "json" / "http.log", rows)
    assert connects(jsonl, keep=True) == connects(tsv, keep=True)


def test_cli_exports_zeek_connects(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_path: Path
) -> None:
    """`ingest zeek` then `export connect`: the contract's columns, no password."""
    path = http_log(tmp_path)
    base = ("--db", str(db_path), "-q")
    assert run_cli(capsys, *base, "ingest", "zeek", str(path)).code == 0
    out = run_cli(capsys, *base, "export", "connect", "--format", "json").out
    rows = json.loads(out)
    assert [(r["client"], r["proxy_port"], r["status"], r["request_host"]) for r in rows] == [
        ("79.26.245.236", 8240, 200, "mailin03.sul.t-online.de"),
        ("::1", 80, 200, "secure.newegg.com"),
        (BOT, 3128, 407, "mx.example.net"),
        (BOT, 3128, 200, "2001:db8::19"),
        (BOT, 3128, 0, "192.0.2.25"),
    ]
    assert set(rows[0]) == {
        "ts",
        "client",
        "client_port",
        "proxy",
        "proxy_port",
        "user",
        "status",
        "request_host",
        "request_port",
        "source",
    }
