"""SMTP probe against real aiosmtpd servers on loopback; none of them may ever see DATA."""

from __future__ import annotations

import dataclasses
import socket
import ssl
from pathlib import Path

from rolecall.orchestrator.demo.lab_support import server_tls
from rolecall.probes.active.driver import run_probes
from tests.probe_helpers import (
    FAST,
    LoopbackGate,
    RelayPolicy,
    detail_of,
    mail_server,
    observed,
    roles_of,
    services,
    submission_kwargs,
)


def ehlo_chunks(address: str, port: int) -> list[bytes]:
    """Return the EHLO reply as the separate reads a plain socket client gets."""
    with socket.create_connection((address, port), timeout=2.0) as sock:
        sock.recv(512)
        sock.sendall(b"EHLO chunks.test\r\n")
        chunks: list[bytes] = []
        while not chunks or not chunks[-1].startswith(b"250 "):
            chunks.append(sock.recv(512))
        sock.sendall(b"QUIT\r\n")
        assert sock.recv(512).startswith(b"221")
    return chunks


def test_open_relay_on_port_25_sending_each_line_in_its_own_segment() -> None:
    """A relay accepting foreign recipients on 25 is an open relay; every EHLO line is read."""
    with mail_server("127.0.5.1", 25, RelayPolicy(), line_delay=0.05) as server:
        assert len(ehlo_chunks("127.0.5.1", 25)) == 5
        server.log.commands.clear()
        records = run_probes([("127.0.5.1", 25)], LoopbackGate(), FAST)
    assert observed(records, 25, "protocol") == ["smtp"]
    assert observed(records, 25, "smtp-extensions") == ["8BITMIME HELP SIZE SMTPUTF8"]
    ehlo = detail_of(records, 25, "smtp-extensions")["ehlo"]
    assert len(ehlo) == 5
    assert ehlo[-1] == "250 HELP"
    assert observed(records, 25, "smtp-relay") == ["open-relay"]
    steps = detail_of(records, 25, "smtp-relay")["steps"]
    commands = [step["command"] for step in steps]
    assert commands[-4:] == [
        "MAIL FROM:<rolecall-probe@example.com>",
        "RCPT TO:<rolecall-probe@example.net>",
        "RSET",
        "QUIT",
    ]
    assert roles_of(records, 25) == {"smtp-server", "smtp-open-relay"}
    assert "DATA" not in server.log.commands
    assert server.log.commands == ["EHLO", "MAIL", "RCPT", "RSET", "QUIT"]
    assert [s.product for s in services(records, 25)] == ["Python SMTP"]
    assert [s.auth for s in services(records, 25)] == ["none"]


def test_server_refusing_foreign_recipients_is_not_an_open_relay() -> None:
    """550 at RCPT for a foreign domain: relay-refused, an smtp-server and nothing more."""
    with mail_server("127.0.5.2", 2525, RelayPolicy(local_domain="corp.test")) as server:
        records = run_probes([("127.0.5.2", 2525)], LoopbackGate(), FAST)
    assert observed(records, 2525, "smtp-relay") == ["relay-refused"]
    steps = detail_of(records, 2525, "smtp-relay")["steps"]
    rcpt = next(step for step in steps if step["command"].startswith("RCPT"))
    assert rcpt["reply"] == ["550 5.7.1 Relaying denied"]
    assert roles_of(records, 2525) == {"smtp-server"}
    assert "DATA" not in server.log.commands
    assert server.log.commands[-2:] == ["RSET", "QUIT"]


def test_submission_on_587_with_starttls_and_auth_required(tmp_path: Path) -> None:
    """587 with STARTTLS then AUTH: certificate recorded, auth required, submission, no DATA."""
    tls = server_tls(tmp_path, "mail.corp.test")
    with mail_server("127.0.5.3", 587, RelayPolicy(), **submission_kwargs(tls)) as server:
        records = run_probes([("127.0.5.3", 587)], LoopbackGate(), FAST)
    assert observed(records, 587, "smtp-starttls") == ["ok"]
    assert observed(records, 587, "tls-certificate") == ["CN=mail.corp.test"]
    cert = detail_of(records, 587, "tls-certificate")
    assert cert["issuer"] == "CN=mail.corp.test"
    assert cert["self_signed"] == "true"
    assert cert["not_after"] > cert["not_before"]
    assert "STARTTLS" in observed(records, 587, "smtp-extensions")[0].split()
    assert observed(records, 587, "smtp-auth") == ["LOGIN PLAIN"]
    assert detail_of(records, 587, "smtp-auth")["before_tls"] == []
    assert observed(records, 587, "smtp-plaintext-auth") == []
    assert observed(records, 587, "smtp-relay") == ["auth-required"]
    assert roles_of(records, 587) == {"smtp-server", "smtp-submission", "smtp-auth-required"}
    assert [s.auth for s in services(records, 587)] == ["starttls+auth"]
    assert "DATA" not in server.log.commands
    assert "RCPT" not in server.log.commands


def test_auth_offered_before_tls_is_recorded_as_plaintext_auth() -> None:
    """A server offering AUTH on a cleartext channel yields smtp-plaintext-auth."""
    kwargs = {"auth_require_tls": False, "authenticator": lambda *_a: None}
    with mail_server("127.0.5.4", 2526, RelayPolicy(local_domain="corp.test"), **kwargs):
        records = run_probes([("127.0.5.4", 2526)], LoopbackGate(), FAST)
    assert observed(records, 2526, "smtp-plaintext-auth") == ["LOGIN PLAIN"]
    assert detail_of(records, 2526, "smtp-auth")["plaintext"] is True


def test_implicit_tls_on_465(tmp_path: Path) -> None:
    """465 speaks TLS from the first byte: the probe handshakes first and still finds SMTP."""
    tls = server_tls(tmp_path, "smtps.corp.test")
    policy = RelayPolicy(local_domain="corp.test")
    with mail_server("127.0.5.5", 465, policy, ssl_context=tls) as server:
        records = run_probes([("127.0.5.5", 465)], LoopbackGate(), FAST)
    assert observed(records, 465, "protocol") == ["smtp"]
    assert observed(records, 465, "tls-certificate") == ["CN=smtps.corp.test"]
    assert observed(records, 465, "smtp-relay") == ["relay-refused"]
    assert "DATA" not in server.log.commands


def test_smtp_on_an_unusual_port_is_found_by_its_banner() -> None:
    """Any port answering with a 220 SMTP banner is probed as SMTP."""
    with mail_server("127.0.5.6", 18025, RelayPolicy()) as server:
        records = run_probes(
            [("127.0.5.6", 18025)], LoopbackGate(), FAST, nmap_names={("127.0.5.6", 18025): ""}
        )
    assert observed(records, 18025, "smtp-relay") == ["open-relay"]
    assert "DATA" not in server.log.commands


def test_smtp_probe_switched_off_still_names_the_banner_but_sends_no_command() -> None:
    """With the smtp probe off, a 220 banner is still SMTP, but no MAIL/RCPT is ever sent."""
    settings = dataclasses.replace(FAST, probes=("socks", "web"))
    with mail_server("127.0.5.7", 2527, RelayPolicy()) as server:
        records = run_probes([("127.0.5.7", 2527)], LoopbackGate(), settings)
    assert observed(records, 2527, "protocol") == ["smtp"]
    assert observed(records, 2527, "smtp-relay") == []
    assert server.log.commands == []


def test_failed_starttls_handshake_still_gets_a_plaintext_relay_test(tmp_path: Path) -> None:
    """STARTTLS answered 220 but the handshake fails: the relay test runs on a new connection."""
    broken = server_tls(tmp_path, "broken.corp.test")
    broken.maximum_version = ssl.TLSVersion.TLSv1_2
    broken.set_ciphers("PSK")  # no PSK callback: no cipher the client can share
    with mail_server("127.0.5.9", 25, RelayPolicy(), tls_context=broken) as server:
        records = run_probes([("127.0.5.9", 25)], LoopbackGate(), FAST)
    assert observed(records, 25, "smtp-starttls") == ["failed"]
    assert detail_of(records, 25, "smtp-starttls")["error"]
    assert observed(records, 25, "smtp-relay") == ["open-relay"]
    assert "smtp-open-relay" in roles_of(records, 25)
    # one EHLO on the connection whose handshake failed, one on the plaintext retry
    assert server.log.commands.count("EHLO") == 2
    assert server.log.commands.count("RCPT") == 1
    assert "DATA" not in server.log.commands
