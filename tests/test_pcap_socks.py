"""SOCKS 4/4a/5 negotiations in synthetic captures, and what their tunnels carry."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

from rolecall.probes.records import Observation
from tests.pcap_helpers import (
    Turn,
    of_type,
    read_all,
    session,
    smtp,
    smtp_turns,
    socks,
    write_pcap,
)

CLIENT, PROXY, MAIL = "10.1.0.7", "10.1.0.1", "10.9.9.25"


def v5_connect(ip: str, port: int, rep: int = 0) -> list[Turn]:
    """A SOCKS5 no-auth CONNECT to ip:port answered with ``rep``."""
    request = b"\x05\x01\x00\x01" + socket.inet_aton(ip) + struct.pack("!H", port)
    reply = bytes([5, rep, 0, 1]) + socket.inet_aton(PROXY) + struct.pack("!H", 61000)
    return [(True, b"\x05\x01\x00"), (False, b"\x05\x00"), (True, request), (False, reply)]


def test_socks4_and_4a(tmp_path: Path) -> None:
    """SOCKS4 by address and 4a by name, with Zeek's status strings."""
    v4 = [
        (True, b"\x04\x01\x00\x19" + socket.inet_aton(MAIL) + b"alice\x00"),
        (False, b"\x00\x5a\x00\x00\x00\x00\x00\x00"),
    ]
    v4a = [
        (True, b"\x04\x01\x01\xbb\x00\x00\x00\x01bob\x00mail.example\x00"),
        (False, b"\x00\x5b\x00\x00\x00\x00\x00\x00"),
    ]
    packets = session(v4, CLIENT, 40000, PROXY, 9050).packets
    packets += session(v4a, CLIENT, 40001, PROXY, 9050).packets
    first, second = sorted(
        socks(read_all(write_pcap(tmp_path / "4.pcap", packets))), key=lambda r: r.client_port
    )
    assert (first.version, first.user, first.status) == (4, "alice", "succeeded")
    assert (first.request_host, first.request_name, first.request_port) == (MAIL, "", 25)
    assert (second.request_host, second.request_name, second.request_port) == (
        "",
        "mail.example",
        443,
    )
    assert second.status == "general SOCKS server failure"
    assert (first.proxy, first.proxy_port) == (PROXY, 9050)


def test_socks5_auth_refused(tmp_path: Path) -> None:
    """A refused username/password login is logged with the user and the failure status."""
    turns = [
        (True, b"\x05\x01\x02"),
        (False, b"\x05\x02"),
        (True, b"\x01\x04carl\x06secret"),
        (False, b"\x01\x01"),
    ]
    (r,) = socks(
        read_all(
            write_pcap(tmp_path / "a.pcap", session(turns, CLIENT, 40000, PROXY, 1080).packets)
        )
    )
    assert (r.version, r.user, r.password, r.status) == (
        5,
        "carl",
        "",
        "general SOCKS server failure",
    )


def test_socks5_ipv6_name_and_unanswered(tmp_path: Path) -> None:
    """A request whose reply was never captured is still logged, without a status."""
    request = b"\x05\x01\x00\x03\x0bexample.com\x00\x50"
    turns = [(True, b"\x05\x01\x00"), (False, b"\x05\x00"), (True, request)]
    pcap = write_pcap(
        tmp_path / "u.pcap", session(turns, "fd00::7", 40000, "fd00::1", 1080).packets
    )
    (r,) = socks(read_all(pcap))
    assert (r.client, r.proxy, r.request_name, r.request_port, r.status) == (
        "fd00::7",
        "fd00::1",
        "example.com",
        80,
        "",
    )


def test_smtp_through_socks_and_egress(tmp_path: Path) -> None:
    """SMTP inside a SOCKS tunnel names the real client and the proxy; egress is linked."""
    mail = smtp_turns(
        ("EHLO bot\n", "250 ok\n"),
        ("MAIL FROM:<spam@example.org>\n", "250 ok\n"),
        ("RCPT TO:<victim@example.net>\n", "250 ok\n"),
        ("DATA\n", "354 go\n"),
        ("Subject: buy\nX-Mailer: Bulk 1\n\nx\n.\n", "250 queued\n"),
        ("QUIT\n", "221 bye\n"),
    )
    tunnel = session(v5_connect(MAIL, 25) + mail, CLIENT, 40000, PROXY, 1080)
    request_ts = tunnel.packets[5][0]  # handshake, greeting, method choice, request
    # the proxy connects out after the request (and before its reply, as proxies do)
    egress = session(mail, PROXY, 61000, MAIL, 25, start=request_ts + 0.0001)
    packets = sorted(tunnel.packets + egress.packets, key=lambda p: p[0])
    items = read_all(write_pcap(tmp_path / "t.pcap", packets))
    (r,) = socks(items)
    assert r.status == "succeeded"
    via, direct = sorted(smtp(items), key=lambda t: t.via_proxy, reverse=True)
    assert (via.client, via.server, via.server_port, via.via_proxy) == (CLIENT, MAIL, 25, PROXY)
    assert (via.subject, via.user_agent, via.mail_from) == ("buy", "Bulk 1", "spam@example.org")
    assert (direct.client, direct.server, direct.via_proxy) == (PROXY, MAIL, "")
    (link,) = [o for o in of_type(items, Observation) if o.kind == "proxy-egress"]
    assert (link.address, link.value, link.port) == (PROXY, CLIENT, 25)


def test_failed_connect_has_no_tunnel(tmp_path: Path) -> None:
    """After a refused CONNECT, later bytes are not parsed as what a tunnel carries."""
    turns = v5_connect(MAIL, 25, rep=5) + smtp_turns(
        ("EHLO x\n", "250 ok\n"), ("MAIL FROM:<a@b>\n", "")
    )
    items = read_all(
        write_pcap(tmp_path / "f.pcap", session(turns, CLIENT, 40000, PROXY, 1080).packets)
    )
    (r,) = socks(items)
    assert r.status == "Connection refused"
    assert smtp(items) == []
