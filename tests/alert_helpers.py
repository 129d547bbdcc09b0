"""Inventories whose findings change through real ingests, and their recorded alert events."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from rolecall.inventory.database import database_url
from tests.cli_helpers import Result, run_cli
from tests.data_paths import CONFORMANCE
from tests.zeek_helpers import write_tsv

INSIDE = "10.20.30.0/24"
CLIENT = "10.20.30.40"
OUTSIDE_SMTP = "198.51.100.25"
DAY = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
CAPTURES = (CONFORMANCE / "smtp-basic" / "trace.pcap", CONFORMANCE / "socks-trace1" / "trace.pcap")


def config(tmp_path: Path, alerts: str = "") -> Path:
    """A config whose inside network is INSIDE, with these `[[alerts]]` entries."""
    path = tmp_path / "rolecall.toml"
    path.write_text(f'[scope]\nallow = ["{INSIDE}"]\n\n{alerts}', encoding="utf-8")
    return path


def cli(capsys: pytest.CaptureFixture[str], db: Path | str, conf: Path, *args: str) -> Result:
    """Run rolecall against db with conf; fail the test on a non-zero exit."""
    result = run_cli(capsys, "--config", str(conf), "--db", str(db), *args)
    assert result.code == 0, result.err
    return result


def mail_log(folder: Path, at: datetime, subject: str = "offer", client: str = CLIENT) -> Path:
    """A Zeek smtp.log (in its own folder) of one message from client to OUTSIDE_SMTP at `at`."""
    folder.mkdir(parents=True)
    row = {
        "ts": f"{at.timestamp():.6f}",
        "uid": f"C{int(at.timestamp())}",
        "id.orig_h": client,
        "id.orig_p": "50123",
        "id.resp_h": OUTSIDE_SMTP,
        "id.resp_p": "25",
        "trans_depth": "1",
        "helo": "web01",
        "mailfrom": "promo@shop.example",
        "rcptto": "a@example.org",
        "subject": subject,
        "last_reply": "250 OK",
        "tls": "F",
    }
    write_tsv(folder / "smtp.log", "smtp", [row])
    return folder


def direct_mail_log(folder: Path, clients: Sequence[str], start: datetime) -> Path:
    """A Zeek smtp.log of one message from each client straight outside, a second apart."""
    rows = [
        {
            "ts": f"{(start + timedelta(seconds=n)).timestamp():.6f}",
            "uid": f"C{n}",
            "id.orig_h": client,
            "id.orig_p": "50000",
            "id.resp_h": OUTSIDE_SMTP,
            "id.resp_p": "25",
            "trans_depth": "1",
            "mailfrom": "a@example.org",
            "rcptto": "b@example.net",
            "last_reply": "250 OK",
            "tls": "F",
        }
        for n, client in enumerate(clients, 1)
    ]
    return write_tsv(folder / "smtp.log", "smtp", rows)


def web_log(folder: Path, at: datetime, client: str = CLIENT) -> Path:
    """A Zeek conn.log of one answered web connection from client at `at` (no mail)."""
    folder.mkdir(parents=True)
    row = {
        "ts": f"{at.timestamp():.6f}",
        "uid": f"W{int(at.timestamp())}",
        "id.orig_h": client,
        "id.orig_p": "40000",
        "id.resp_h": "203.0.113.80",
        "id.resp_p": "80",
        "proto": "tcp",
        "service": "http",
        "duration": "1.0",
        "orig_bytes": "100",
        "resp_bytes": "2000",
        "conn_state": "SF",
        "history": "ShADadFf",
        "orig_pkts": "5",
        "orig_ip_bytes": "400",
        "resp_pkts": "5",
        "resp_ip_bytes": "2400",
    }
    write_tsv(folder / "conn.log", "conn", [row])
    return folder


def events(db: Path | str, rule: str | None = None) -> list[dict[str, Any]]:
    """The recorded alert events, in sequence order (JSON columns decoded)."""
    engine = create_engine(database_url(str(db)))
    try:
        with engine.connect() as connection:
            query = text("SELECT * FROM alert_event ORDER BY sequence")
            rows = [dict(row._mapping) for row in connection.execute(query)]
    finally:
        engine.dispose()
    for row in rows:
        for name in ("roles", "groups", "evidence", "techniques"):
            row[name] = json.loads(row[name])
    return [row for row in rows if rule is None or row["rule"] == rule]


def cursor_sequence(db: Path | str, output: str) -> int:
    """The sequence number of the last event the output's cursor has committed (0 before any)."""
    engine = create_engine(database_url(str(db)))
    try:
        with engine.connect() as connection:
            query = text("SELECT sequence FROM alert_cursor WHERE output = :output")
            found = connection.execute(query, {"output": output}).scalar()
    finally:
        engine.dispose()
    return int(found or 0)


def life_cycle(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db: Path | str, conf: Path
) -> None:
    """Open, update, resolve (host seen without mail two days on) and reopen one finding."""
    logs = tmp_path / "logs"
    cli(capsys, db, conf, "ingest", "zeek", str(mail_log(logs / "1", DAY)))
    later = DAY + timedelta(hours=2)
    cli(capsys, db, conf, "ingest", "zeek", str(mail_log(logs / "2", later, "offer two")))
    cli(capsys, db, conf, "ingest", "zeek", str(web_log(logs / "3", DAY + timedelta(days=2))))
    cli(capsys, db, conf, "ingest", "zeek", str(mail_log(logs / "4", DAY + timedelta(days=3))))
