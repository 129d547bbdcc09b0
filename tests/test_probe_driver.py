"""The probe driver: scope first, bounded time against bad peers, and the other services."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rolecall.orchestrator.demo.lab_support import server_tls
from rolecall.probes.active.driver import run_probes
from rolecall.probes.active.settings import ProbeSettings
from rolecall.probes.errors import InputError
from rolecall.probes.gate import OutOfScopeError
from rolecall.probes.records import Observation, Record
from tests.bad_peers import bad_peer
from tests.probe_helpers import (
    FAST,
    LoopbackGate,
    dovecot,
    observed,
    process,
    services,
    web_server,
)

BAD_PEER_SETTINGS = dataclasses.replace(
    FAST, connect_timeout=1.0, read_timeout=1.0, banner_timeout=0.5, host_budget=4.0
)


def unclassified(records: list[Record], port: int) -> dict[str, object]:
    """Return the evidence of the one "unclassified" observation on ``port``."""
    found = [r for r in records if isinstance(r, Observation) and r.port == port]
    assert [r.kind for r in found] == ["unclassified"]
    detail: dict[str, object] = json.loads(found[0].detail)
    return detail


def test_out_of_scope_target_is_refused_before_any_packet() -> None:
    """One target outside the scope stops the whole run before anyone is contacted."""
    with socket.socket() as listener:
        listener.bind(("127.0.2.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        gate = LoopbackGate("127.0.2.0/24")
        with pytest.raises(OutOfScopeError):
            run_probes([("127.0.2.1", port), ("127.0.3.1", port)], gate, FAST)
        time.sleep(0.2)
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert gate.asked == ["127.0.2.1", "127.0.3.1"]


def test_a_bad_port_number_is_input_error() -> None:
    """A port outside 1-65535 is bad input, said in one sentence."""
    with pytest.raises(InputError, match="not a TCP port number"):
        run_probes([("127.0.2.2", 70000)], LoopbackGate(), FAST)


def test_bad_settings_are_input_errors() -> None:
    """Settings no probe could run with are refused with one sentence naming the setting."""
    with pytest.raises(InputError, match="read_timeout"):
        ProbeSettings(read_timeout=0)
    with pytest.raises(InputError, match="unknown probe"):
        ProbeSettings(probes=("socks", "telnet"))
    with pytest.raises(InputError, match="relay_recipient"):
        ProbeSettings(relay_recipient="x@y>\r\nDATA")


def test_tarpit_dripping_a_byte_a_second_cannot_stall_the_scan() -> None:
    """A tarpit is given up on within the timeouts and reported unclassified with its bytes."""
    with bad_peer("tarpit", "127.0.2.3", 12001):
        started = time.monotonic()
        records = run_probes([("127.0.2.3", 12001)], LoopbackGate(), BAD_PEER_SETTINGS)
        elapsed = time.monotonic() - started
    assert elapsed < BAD_PEER_SETTINGS.host_budget + 1.0
    detail = unclassified(records, 12001)
    assert str(detail["bytes"]).startswith("2")


def test_many_tarpit_ports_are_probed_concurrently_within_the_host_budget() -> None:
    """Five tarpit ports of one host together still end within one host budget."""
    ports = list(range(12010, 12015))
    with contextlib.ExitStack() as stack:
        for port in ports:
            stack.enter_context(bad_peer("tarpit", "127.0.2.4", port))
        started = time.monotonic()
        records = run_probes([("127.0.2.4", p) for p in ports], LoopbackGate(), BAD_PEER_SETTINGS)
        elapsed = time.monotonic() - started
    assert elapsed < BAD_PEER_SETTINGS.host_budget + 1.0
    assert sorted(r.port for r in records if isinstance(r, Observation)) == ports


def test_garbage_speaking_port_is_unclassified_with_the_bytes_seen() -> None:
    """Bytes no protocol uses yield one "unclassified" observation carrying them."""
    with bad_peer("garbage", "127.0.2.5", 12002):
        records = run_probes([("127.0.2.5", 12002)], LoopbackGate(), BAD_PEER_SETTINGS)
    found = [r for r in records if isinstance(r, Observation)]
    assert [(r.kind, r.value) for r in found] == [("unclassified", "unrecognised reply")]
    detail = unclassified(records, 12002)
    assert "garbage" in str(detail["bytes"])
    assert str(detail["hex"]).startswith("8f00")


def test_silent_port_is_unclassified_after_every_probe_was_tried() -> None:
    """A port that never answers is reported, bounded, with the list of what was tried."""
    with bad_peer("silent", "127.0.2.6", 12003):
        started = time.monotonic()
        records = run_probes([("127.0.2.6", 12003)], LoopbackGate(), BAD_PEER_SETTINGS)
        elapsed = time.monotonic() - started
    assert elapsed < BAD_PEER_SETTINGS.host_budget + 1.0
    detail = unclassified(records, 12003)
    assert detail["tried"]
    assert detail["bytes"] == ""


def test_http_and_https_servers(tmp_path: Path) -> None:
    """HEAD / over TCP finds a web server; over TLS an https server with its certificate."""
    tls = server_tls(tmp_path, "www.corp.test")
    with web_server("127.0.4.4", 18080), web_server("127.0.4.4", 18443, tls):
        records = run_probes([("127.0.4.4", 18080), ("127.0.4.4", 18443)], LoopbackGate(), FAST)
    assert observed(records, 18080, "protocol") == ["http"]
    assert [s.product for s in services(records, 18080)] == ["BaseHTTP"]
    assert observed(records, 18443, "protocol") == ["https"]
    assert observed(records, 18443, "tls-certificate") == ["CN=www.corp.test"]


def test_dns_server_over_tcp() -> None:
    """dnsmasq answers version.bind CH TXT over TCP: a DNS server, its version recorded."""
    args = [
        "dnsmasq",
        "--keep-in-foreground",
        "--port=5353",
        "--listen-address=127.0.4.1",
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        "--conf-file=/dev/null",
        "--user=root",
    ]
    with process(args, "127.0.4.1", 5353):
        records = run_probes(
            [("127.0.4.1", 5353)], LoopbackGate(), FAST, {("127.0.4.1", 5353): "mdns"}
        )
    assert observed(records, 5353, "protocol") == ["dns"]
    assert [s.product for s in services(records, 5353)] == ["dnsmasq"]


def test_ssh_server(tmp_path: Path) -> None:
    """OpenSSH's greeting names the protocol, product and version."""
    key = tmp_path / "host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    Path("/run/sshd").mkdir(exist_ok=True)
    args = ["/usr/sbin/sshd", "-D", "-e", "-f", "/dev/null", "-h", str(key), "-p", "12222"]
    with process([*args, "-o", "ListenAddress=127.0.4.2"], "127.0.4.2", 12222):
        records = run_probes([("127.0.4.2", 12222)], LoopbackGate(), FAST)
    assert observed(records, 12222, "protocol") == ["ssh"]
    assert [s.product for s in services(records, 12222)] == ["OpenSSH"]


def test_ftp_server_with_anonymous_login(tmp_path: Path) -> None:
    """pyftpdlib allows anonymous login: ftp-server and ftp-anonymous "allowed"."""
    args = [
        sys.executable,
        "-m",
        "pyftpdlib",
        "-i",
        "127.0.4.3",
        "-p",
        "12121",
        "-d",
        str(tmp_path),
    ]
    with process(args, "127.0.4.3", 12121):
        records = run_probes([("127.0.4.3", 12121)], LoopbackGate(), FAST)
    assert observed(records, 12121, "protocol") == ["ftp"]
    assert observed(records, 12121, "ftp-anonymous") == ["allowed"]


def test_connections_are_paced_by_the_connect_rate() -> None:
    """Six one-connection ports at five connections a second take at least one second."""
    ports = list(range(12020, 12026))
    paced = dataclasses.replace(BAD_PEER_SETTINGS, connect_rate=5.0)
    with contextlib.ExitStack() as stack:
        for port in ports:
            stack.enter_context(bad_peer("garbage", "127.0.2.7", port))
        started = time.monotonic()
        records = run_probes([("127.0.2.7", p) for p in ports], LoopbackGate(), paced)
        elapsed = time.monotonic() - started
    assert elapsed >= 1.0
    assert len(records) == len(ports)


def test_ftp_server_refusing_anonymous_login(tmp_path: Path) -> None:
    """pyftpdlib with only a named user refuses anonymous: ftp-server, ftp-anonymous "refused"."""
    args = [sys.executable, "-m", "pyftpdlib", "-i", "127.0.4.6", "-p", "12122", "-u", "bob"]
    with process([*args, "-P", "not-anonymous", "-d", str(tmp_path)], "127.0.4.6", 12122):
        records = run_probes([("127.0.4.6", 12122)], LoopbackGate(), FAST)
    assert observed(records, 12122, "protocol") == ["ftp"]
    assert observed(records, 12122, "ftp-anonymous") == ["refused"]


def test_pop3_and_imap_servers(tmp_path: Path) -> None:
    """Dovecot's greetings: +OK is POP3, * OK is IMAP, product named."""
    with dovecot(tmp_path, "127.0.4.5", 12143, 12110):
        records = run_probes([("127.0.4.5", 12143), ("127.0.4.5", 12110)], LoopbackGate(), FAST)
    assert observed(records, 12143, "protocol") == ["imap"]
    assert observed(records, 12110, "protocol") == ["pop3"]
    assert [s.product for s in services(records, 12143) + services(records, 12110)] == [
        "Dovecot",
        "Dovecot",
    ]
