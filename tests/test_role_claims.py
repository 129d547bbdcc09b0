"""Claims that were wrong against real servers: the approved relay, mail readers, names as assets.

An approved relay delivering mail outside is doing its job (no direct-external-smtp); a
host that only reads mail (IMAP, POP3) is a workstation; a SOCKS request naming a host
never makes the name an asset: every address in the inventory is an IP address.
"""

from __future__ import annotations

import imaplib
import poplib
import socket
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rolecall.inventory.store import Store
from rolecall.probes.records import HostName, Observation
from tests.cli_helpers import cli_json, ingest
from tests.findings_helpers import send_mail, write_config
from tests.pcap_helpers import (
    aiosmtpd_server,
    loopback_capture,
    session,
    smtp_turns,
    write_pcap,
)
from tests.probe_helpers import dovecot

NET = "127.0.125.0/24"
RELAY, HOST, OUTSIDE = "127.0.125.20", "127.0.125.21", "127.0.125.200"
MAIL_SERVER, IMAP_READER, POP_READER = "127.0.125.30", "127.0.125.31", "127.0.125.32"
CONFIG = f"""
[scope]
allow = ["127.0.125.0/25"]
[findings]
approved_relays = ["{RELAY}"]
"""


def test_the_approved_relay_delivering_outside_is_doing_its_job(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db, config = tmp_path / "inventory.db", write_config(tmp_path, CONFIG)
    with (
        aiosmtpd_server(OUTSIDE) as (host, port, received),
        loopback_capture(tmp_path / "outbound.pcap", NET) as pcap,
    ):
        send_mail(RELAY, (host, port), ["customer@far.test"])
        send_mail(HOST, (host, port), ["customer@far.test"])
    assert len(received) == 2
    ingest(capsys, db, config, pcap)
    found = {(f["rule"], f["address"]) for f in cli_json(capsys, db, config, "findings", "list")}
    assert ("direct-external-smtp", HOST) in found
    assert ("direct-external-smtp", RELAY) not in found


class _SourcedIMAP(imaplib.IMAP4):
    """imaplib from a chosen loopback source address."""

    def __init__(self, source: str, host: str, port: int) -> None:
        """Connect from source to host:port."""
        self.source = source
        super().__init__(host, port, timeout=10)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        """The connection, bound to the source address."""
        return socket.create_connection((self.host, self.port), timeout, (self.source, 0))


class _SourcedPOP3(poplib.POP3):
    """poplib from a chosen loopback source address."""

    def __init__(self, source: str, host: str, port: int) -> None:
        """Connect from source to host:port."""
        self.source = source
        super().__init__(host, port, timeout=10)

    def _create_socket(self, timeout: float) -> socket.socket:
        """The connection, bound to the source address."""
        return socket.create_connection((self.host, self.port), timeout, (self.source, 0))


def test_a_host_that_only_reads_mail_is_a_workstation(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Dovecot on the standard ports; one reader speaks IMAP, the other POP3, nothing else."""
    db = tmp_path / "inventory.db"
    with (
        dovecot(tmp_path, MAIL_SERVER, 143, 110),
        loopback_capture(tmp_path / "reading.pcap", NET) as pcap,
    ):
        imap = _SourcedIMAP(IMAP_READER, MAIL_SERVER, 143)
        assert "IMAP4REV1" in imap.capabilities
        imap.noop()
        imap.logout()
        pop = _SourcedPOP3(POP_READER, MAIL_SERVER, 110)
        assert pop.getwelcome().startswith(b"+OK")
        pop.capa()
        pop.quit()
    ingest(capsys, db, None, pcap)
    roles = {
        row["address"]: row["roles"] for row in cli_json(capsys, db, None, "export", "inventory")
    }
    assert roles[IMAP_READER] == ["imap-client", "workstation"]
    assert roles[POP_READER] == ["pop3-client", "workstation"]
    assert {"imap-server", "pop3-server"} <= set(roles[MAIL_SERVER])
    assert "workstation" not in roles[MAIL_SERVER]


def _socks5_by_name(name: bytes, port: int) -> list[tuple[bool, bytes]]:
    """A SOCKS5 no-auth CONNECT to a host name, answered with success."""
    request = b"\x05\x01\x00\x03" + bytes([len(name)]) + name + port.to_bytes(2, "big")
    reply = b"\x05\x00\x00\x01" + socket.inet_aton("10.1.0.1") + (61000).to_bytes(2, "big")
    return [(True, b"\x05\x01\x00"), (False, b"\x05\x00"), (True, request), (False, reply)]


def test_a_socks_request_naming_a_host_makes_no_asset_of_the_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """SOCKS5 and 4a by name, mail through the tunnel: the name is kept, never as an address."""
    client, proxy, mx = "10.1.0.7", "10.1.0.1", "10.9.9.25"
    mail = smtp_turns(
        ("EHLO bot\n", "250 ok\n"),
        ("MAIL FROM:<spam@example.org>\n", "250 ok\n"),
        ("RCPT TO:<victim@example.net>\n", "250 ok\n"),
        ("DATA\n", "354 go\n"),
        ("Subject: buy\n\nx\n.\n", "250 queued\n"),
        ("QUIT\n", "221 bye\n"),
    )
    v4a = [
        (True, b"\x04\x01\x00\x19\x00\x00\x00\x01bot\x00relay.example.org\x00"),
        (False, b"\x00\x5a\x00\x00\x00\x00\x00\x00"),
    ]
    tunnel = session(_socks5_by_name(b"mx.example.net", 25) + mail, client, 40000, proxy, 1080)
    egress = session(mail, proxy, 61000, mx, 25, start=tunnel.packets[5][0] + 0.0001)
    other = session(v4a + mail, client, 40001, proxy, 1080, start=tunnel.packets[-1][0] + 1)
    packets = sorted(tunnel.packets + egress.packets + other.packets, key=lambda p: p[0])
    db = tmp_path / "inventory.db"
    ingest(capsys, db, None, write_pcap(tmp_path / "by-name.pcap", packets))

    addresses = {row["address"] for row in cli_json(capsys, db, None, "export", "inventory")}
    assert addresses == {client, proxy, mx}
    rows = cli_json(capsys, db, None, "export", "smtp")
    assert sorted((r["client"], r["server"], r["via_proxy"], r["relayed_for"]) for r in rows) == [
        (proxy, mx, "", client),  # linked: the only connection the proxy opened to port 25
        (client, "mx.example.net", proxy, ""),
        (client, "relay.example.org", proxy, ""),
    ]
    with sqlite3.connect(db) as connection:
        role_hosts = {row[0] for row in connection.execute("SELECT DISTINCT address FROM role")}
    assert role_hosts <= {client, proxy, mx}


def test_the_store_makes_no_asset_of_a_name(tmp_path: Path) -> None:
    """A reader's mistake (a name where an address belongs) is counted, not stored as an asset."""
    seen = datetime(2026, 1, 2, tzinfo=UTC)
    store = Store.open(str(tmp_path / "inventory.db"))
    try:
        with store.writer() as writer:
            writer.add(Observation("mx.example.net", "dns-query", "pcap", seen, value="x"))
            writer.add(Observation("fe80::1%eth0", "dns-query", "pcap", seen, value="x"))
            writer.add(HostName("10.0.0.5", "mx.example.net", "pcap", seen))
        counts = writer.counts
    finally:
        store.close()
    assert counts["not_addresses"] == 2
    with sqlite3.connect(tmp_path / "inventory.db") as connection:
        assets = [row[0] for row in connection.execute("SELECT address FROM asset")]
        names = connection.execute("SELECT address, name FROM hostname").fetchall()
    assert assets == ["10.0.0.5"]
    assert names == [("10.0.0.5", "mx.example.net")]
