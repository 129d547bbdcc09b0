"""`ingest nmap-xml` on real nmap output, once; hostile names and banners stay inert."""

from __future__ import annotations

import csv
import io
import json
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cli_helpers import Listener, run_cli
from tests.nmap_samples import HEAD, TAIL, host_xml


@pytest.fixture
def smtp_banner_server() -> Iterator[tuple[str, int]]:
    """A listener on 127.0.77.33 that greets like an SMTP server, for nmap -sV to recognise."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.77.33", 2525))
    server.listen(16)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=converse, args=(conn,), daemon=True).start()

    def converse(conn: socket.socket) -> None:
        try:
            conn.sendall(b"220 mx.test.invalid ESMTP Postfix (Debian/GNU)\r\n")
            conn.settimeout(3)
            while conn.recv(1024):
                conn.sendall(b"502 5.5.2 Error: command not recognized\r\n")
        except OSError:
            pass
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield "127.0.77.33", 2525
    stop.set()
    thread.join()
    server.close()


def test_real_nmap_xml_is_imported_once(
    capsys: pytest.CaptureFixture[str],
    db_path: Path,
    tmp_path: Path,
    smtp_banner_server: tuple[str, int],
    listeners: Callable[[str, int], Listener],
) -> None:
    listeners("127.0.77.34", 8080)
    xml = tmp_path / "scan.xml"
    subprocess.run(
        [
            *("nmap", "-sT", "-sV", "--version-intensity", "0", "-n", "-p", "2525,8080,9"),
            *("-oX", str(xml), "127.0.77.33", "127.0.77.34"),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    base = ("--db", str(db_path), "ingest", "nmap-xml")
    first = run_cli(capsys, *base, str(xml))
    assert first.code == 0, first.err
    again = run_cli(capsys, *base, str(xml))
    assert again.code == 0
    assert "1 already ingested, unchanged" in again.out

    services = run_cli(capsys, "--db", str(db_path), "export", "services", "--format", "json")
    rows = {row["port"]: row for row in json.loads(services.out)}
    assert {(row["address"], port) for port, row in rows.items()} == {
        ("127.0.77.33", 2525),
        ("127.0.77.34", 8080),
    }
    assert rows[2525]["protocol"] == "smtp"
    assert rows[2525]["product"] == "Postfix smtpd"
    assert rows[2525]["source"] == "nmap-xml"

    runs = json.loads(
        run_cli(capsys, "--db", str(db_path), "export", "runs", "--format", "json").out
    )
    assert [run["status"] for run in runs] == ["ok", "ok"]
    assert runs[0]["counts"]["Service"] == 2
    assert runs[1]["counts"]["files_already_ingested"] == 1


def test_hostile_names_and_banners_are_neutralised_in_csv(
    capsys: pytest.CaptureFixture[str], db_path: Path, tmp_path: Path
) -> None:
    xml = tmp_path / "hostile.xml"
    xml.write_text(
        HEAD
        + host_xml("10.6.6.6", 25, name="=HYPERLINK(&quot;http://x&quot;)", banner="+cmd|calc")
        + host_xml("10.6.6.7", 25, name="@SUM(1)", banner="-2+3")
        + TAIL
    )
    assert run_cli(capsys, "--db", str(db_path), "ingest", "nmap-xml", str(xml)).code == 0

    inventory = run_cli(capsys, "--db", str(db_path), "export", "inventory")
    names = {row["address"]: row["hostnames"] for row in csv.DictReader(io.StringIO(inventory.out))}
    assert names == {"10.6.6.6": '\'=HYPERLINK("http://x")', "10.6.6.7": "'@SUM(1)"}

    services = run_cli(capsys, "--db", str(db_path), "export", "services")
    banners = {row["address"]: row["banner"] for row in csv.DictReader(io.StringIO(services.out))}
    assert banners == {"10.6.6.6": "'+cmd|calc", "10.6.6.7": "'-2+3"}

    # JSON carries the data as it is: neutralising is for spreadsheets.
    as_json = run_cli(capsys, "--db", str(db_path), "export", "services", "--format", "jsonl")
    assert json.loads(as_json.out.splitlines()[0])["banner"] == "+cmd|calc"


def test_export_to_a_file(
    capsys: pytest.CaptureFixture[str], db_path: Path, tmp_path: Path
) -> None:
    xml = tmp_path / "one.xml"
    xml.write_text(HEAD + host_xml("10.2.2.2", 25, name="mx.example.org") + TAIL)
    assert run_cli(capsys, "--db", str(db_path), "ingest", "nmap-xml", str(xml)).code == 0
    out = tmp_path / "inventory.csv"
    result = run_cli(capsys, "--db", str(db_path), "export", "inventory", "-o", str(out))
    assert result.code == 0
    assert result.out == ""
    assert "wrote 1 inventory rows" in result.err
    header, row = out.read_text().splitlines()
    assert header == "address,hostnames,roles,groups,open_ports,first_seen,last_seen,sources"
    times = "2026-11-24T01:56:51.000000Z,2026-11-24T01:56:51.000000Z"
    assert row == f"10.2.2.2,mx.example.org,,,25/tcp,{times},nmap-xml"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_export_to_an_unwritable_place(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_path: Path
) -> None:
    scan = tmp_path / "scan.xml"
    scan.write_text(HEAD + host_xml("10.2.2.2", 25) + TAIL)
    assert run_cli(capsys, "--db", str(db_path), "ingest", "nmap-xml", str(scan)).code == 0
    result = run_cli(capsys, "--db", str(db_path), "export", "runs", "-o", "/nonexistent/x.csv")
    assert result.code == 2
    assert (
        result.err.strip() == "rolecall: cannot write /nonexistent/x.csv: No such file or directory"
    )
