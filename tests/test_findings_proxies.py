"""open-socks-proxy and blocklisted-peer from real captures: Zeek traces, curl via microsocks."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli
from tests.data_paths import CONFORMANCE
from tests.findings_helpers import at, capture, findings, ingest, roles, write_config
from tests.pcap_helpers import session, write_pcap
from tests.probe_helpers import microsocks, web_server


def _curl(source: str, proxy: str, url: str, credentials: str = "") -> None:
    """Fetch a URL with curl through a SOCKS5 proxy."""
    args = ["curl", "-sS", "--max-time", "5", "--interface", source, "-o", "/dev/null"]
    if credentials:
        args += ["--proxy-user", credentials]
    subprocess.run([*args, "--socks5", proxy, url], check=True)


def test_proxy_relaying_without_credentials_is_open(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    with (
        web_server(at(30), 8080),
        microsocks(at(7), 1080),
        microsocks(at(8), 1080, user="alice", password="secret"),
        capture(tmp_path, "socks") as pcap,
    ):
        _curl(at(10), f"{at(7)}:1080", f"http://{at(30)}:8080/")
        _curl(at(11), f"{at(8)}:1080", f"http://{at(30)}:8080/", "alice:secret")
    ingest(capsys, database, None, pcap)
    found = findings(capsys, database)
    summary = found["open-socks-proxy", at(7)]["summary"]
    assert at(10) in summary
    assert "without credentials" in summary
    assert ("open-socks-proxy", at(8)) not in found


def test_zeek_traces_open_proxy_and_password_proxy(
    capsys: pytest.CaptureFixture[str], database: str
) -> None:
    ingest(capsys, database, None, CONFORMANCE / "socks-trace1" / "trace.pcap")
    ingest(capsys, database, None, CONFORMANCE / "socks-auth" / "trace.pcap")
    found = findings(capsys, database)
    assert ("open-socks-proxy", "60.190.189.214") in found
    assert ("open-socks-proxy", "192.168.0.1") not in found  # it demanded a password


def test_traffic_with_a_blocklisted_address(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    drop = tmp_path / "drop.txt"
    drop.write_text(
        "; Spamhaus DROP List 2026/11/24\n"
        "127.0.120.64/28 ; SBL123456\n"
        "# a plain list entry too\n"
        "127.0.120.99\n"
    )
    config = write_config(tmp_path, f'[findings]\nblocklists = ["{drop}"]\n')
    with (
        web_server(at(66), 8080),
        web_server(at(31), 8080),
        capture(tmp_path, "peers") as pcap,
    ):
        subprocess.run(
            ["curl", "-sS", "--interface", at(10), "-o", "/dev/null", f"http://{at(66)}:8080/"],
            check=True,
        )
        subprocess.run(
            ["curl", "-sS", "--interface", at(11), "-o", "/dev/null", f"http://{at(31)}:8080/"],
            check=True,
        )
    ingest(capsys, database, config, pcap)
    found = findings(capsys, database, config)
    assert at(66) in found["blocklisted-peer", at(10)]["summary"]
    assert ("blocklisted-peer", at(11)) not in found
    assert ("blocklisted-peer", at(66)) not in found


def test_a_damaged_blocklist_is_bad_input_naming_file_and_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    drop = tmp_path / "drop.txt"
    drop.write_text("10.0.0.0/8 ; SBL1\nnot-an-address ; SBL2\n")
    config = write_config(tmp_path, f'[findings]\nblocklists = ["{drop}"]\n')
    result = run_cli(capsys, "--db", database, "--config", str(config), "findings", "list")
    assert result.code == 2
    assert f"{drop}:2" in result.err
    assert "Traceback" not in result.err


def test_socks_proxy_on_443_is_what_it_speaks_not_what_its_port_suggests(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    """microsocks on 443, used in a capture, then probed: socks-proxy, never a web server.

    Flows to 443 alone would say web-server and https-server. In a second store the
    capture comes after the probe: the port number's roles are never given either.
    """
    proxy = at(40)
    later = tmp_path / "probed-first.db"
    scan = ("scan", "subnet", f"{proxy}/32", "--ports", "443")
    with web_server(at(30), 8080), microsocks(proxy, 443):
        with capture(tmp_path, "socks443") as pcap:
            _curl(at(12), f"{proxy}:443", f"http://{at(30)}:8080/")
        ingest(capsys, database, None, pcap)
        captured = roles(capsys, database)[proxy]["roles"]
        assert run_cli(capsys, "--db", database, *scan).code == 0
        assert run_cli(capsys, "--db", str(later), *scan).code == 0
    ingest(capsys, later, None, pcap)
    probed = roles(capsys, database)[proxy]["roles"]
    probed_first = roles(capsys, later)[proxy]["roles"]
    for held in (captured, probed, probed_first):
        assert "socks-proxy" in held
        assert not {"https-server", "web-server"} & set(held)
    assert {"socks5", "socks-proxy-open"} <= set(probed) & set(probed_first)


def _greet_socks5(source: str, proxy: str, port: int) -> None:
    """Open a SOCKS5 session and leave after the method reply (no request a capture decodes)."""
    with socket.create_connection((proxy, port), timeout=5, source_address=(source, 0)) as sock:
        sock.sendall(b"\x05\x01\x00")
        assert sock.recv(2) == b"\x05\x00"


def test_roles_a_port_number_gave_are_withdrawn_once_a_probe_hears_socks(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    """Flows to 443 first (web-server, https-server), then the probe hears SOCKS: withdrawn."""
    proxy = at(41)
    with microsocks(proxy, 443):
        with capture(tmp_path, "greeting443") as pcap:
            _greet_socks5(at(13), proxy, 443)
        ingest(capsys, database, None, pcap)
        guessed = set(roles(capsys, database)[proxy]["roles"])
        scan = ("scan", "subnet", f"{proxy}/32", "--ports", "443")
        assert run_cli(capsys, "--db", database, *scan).code == 0
    assert {"https-server", "web-server"} <= guessed
    held = set(roles(capsys, database)[proxy]["roles"])
    assert {"socks-proxy", "socks5"} <= held
    assert not {"https-server", "web-server"} & held


def _connect_capture(path: Path, proxy: str, start: float) -> Path:
    """A capture of CONNECTs a proxy answered: 200 on 8080, 407 on 80, and a 200 on 443."""
    request = b"CONNECT 192.0.2.25:443 HTTP/1.1\r\nHost: 192.0.2.25:443\r\n\r\n"
    granted = b"HTTP/1.1 200 Connection established\r\n\r\n"
    asked = b'HTTP/1.1 407 Auth Required\r\nProxy-Authenticate: Basic realm="x"\r\n\r\n'
    packets = []
    for n, (port, reply) in enumerate(((8080, granted), (80, asked), (443, granted))):
        turns = [(True, request), (False, reply)]
        packets += session(turns, "10.20.0.7", 40000 + n, proxy, port, start=start + n).packets
    return write_pcap(path, packets)


def _plain_capture(path: Path, proxy: str) -> Path:
    """A capture of plain connections to the proxy's ports: flows whose port numbers guess."""
    packets = []
    for n, port in enumerate((8080, 80, 443)):
        turns = [(True, b"\x00\x01hello"), (False, b"\x00\x02")]
        packets += session(turns, "10.20.0.8", 41000 + n, proxy, port, start=1e9 + n).packets
    return write_pcap(path, packets)


def test_a_port_answering_connect_in_captures_is_a_proxy_not_a_web_server(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """CONNECT answered (2xx or 407) on 8080/80/443: http-proxy; the port numbers' guess dropped.

    Read in one capture, and after plain flows had already given the guessed roles.
    """
    proxy = "10.20.0.1"
    at_once, later = tmp_path / "once.db", tmp_path / "later.db"
    ingest(capsys, at_once, None, _connect_capture(tmp_path / "c.pcap", proxy, 1e9))
    ingest(capsys, later, None, _plain_capture(tmp_path / "p.pcap", proxy))
    assert {"web-server", "https-server"} <= set(roles(capsys, later)[proxy]["roles"])
    ingest(capsys, later, None, _connect_capture(tmp_path / "c2.pcap", proxy, 1e9 + 100))
    for db in (at_once, later):
        held = set(roles(capsys, db)[proxy]["roles"])
        assert {"http-proxy", "http-proxy-auth"} <= held
        assert not {"web-server", "https-server"} & held, held
