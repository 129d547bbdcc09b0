"""Flows, DNS, HTTP and TLS SNI from synthetic captures."""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import dpkt

from rolecall.probes.records import Flow, HostName, Item, Observation
from tests.pcap_helpers import (
    TcpSession,
    of_type,
    read_all,
    session,
    udp_datagram,
    write_pcap,
)

DAY = 86400.0
T0 = 1_700_000_000.0 - 1_700_000_000.0 % DAY + DAY - 60  # a minute before a UTC midnight


def observations(items: list[Item], kind: str) -> list[Observation]:
    """Observations of one kind."""
    return [o for o in items if isinstance(o, Observation) and o.kind == kind]


def test_flows_per_day_with_counters(tmp_path: Path) -> None:
    """Connections fold into one Flow per client/server/port/day; answered means a reply came."""
    packets = []
    for n, start in enumerate((T0, T0 + 10, T0 + 120)):  # the third starts the next UTC day
        packets += session(
            [(True, b"x" * 100), (False, b"y" * 50)], cport=41000 + n, sport=8443, start=start
        ).packets
    unanswered = TcpSession("10.0.0.5", 42000, "10.0.0.99", 23, ts=T0)
    unanswered._add(True, dpkt.tcp.TH_SYN, b"")
    packets += unanswered.packets
    items = read_all(write_pcap(tmp_path / "f.pcap", sorted(packets)))
    flows = sorted(of_type(items, Flow), key=lambda f: (f.server, f.day))
    first_day, second_day, silent = flows
    assert (first_day.connections, second_day.connections) == (2, 1)
    assert first_day.day != second_day.day
    assert first_day.packets == 2 * 8  # handshake 3, data 2, close 3
    assert first_day.bytes == 2 * (8 * 40 + 150)
    assert first_day.answered
    assert second_day.answered
    assert first_day.first_seen.timestamp() == T0 + 0.001
    assert (silent.server, silent.server_port, silent.answered, silent.packets) == (
        "10.0.0.99",
        23,
        False,
        1,
    )


def test_missing_syn_uses_port_to_find_server(tmp_path: Path) -> None:
    """Mid-stream, the side on a well-known port is the server even if it speaks first."""
    packets = session(
        [(False, b"HTTP/1.1 200 OK\r\n\r\n"), (True, b"ack")],
        sport=80,
        cport=50000,
        handshake=False,
        close=False,
    ).packets
    (flow,) = of_type(read_all(write_pcap(tmp_path / "m.pcap", packets)), Flow)
    assert (flow.client, flow.server, flow.server_port) == ("10.0.0.5", "10.0.0.25", 80)


def test_dns_queries_and_answers(tmp_path: Path) -> None:
    """A query is an observation on the client; A/AAAA answers are host names."""
    query = dpkt.dns.DNS(id=7, qd=[dpkt.dns.DNS.Q(name="mail.example.org", type=dpkt.dns.DNS_A)])
    answer = dpkt.dns.DNS(id=7, qr=dpkt.dns.DNS_R, qd=query.qd)
    answer.an = [
        dpkt.dns.DNS.RR(name="mail.example.org", type=dpkt.dns.DNS_A, rdata=bytes([192, 0, 2, 25])),
        dpkt.dns.DNS.RR(
            name="mail.example.org",
            type=dpkt.dns.DNS_AAAA,
            rdata=b"\x20\x01\x0d\xb8" + b"\0" * 11 + b"\x25",
        ),
    ]
    packets = [
        (T0, udp_datagram("10.0.0.5", 5353, "10.0.0.53", 53, bytes(query))),
        (T0 + 0.01, udp_datagram("10.0.0.53", 53, "10.0.0.5", 5353, bytes(answer))),
        (T0 + 1, udp_datagram("10.0.0.5", 5353, "10.0.0.53", 53, bytes(query))),
        (T0 + 2, udp_datagram("10.0.0.5", 5354, "10.0.0.53", 53, b"\xff" * 7)),  # garbage
    ]
    items = read_all(write_pcap(tmp_path / "d.pcap", packets))
    (q,) = observations(items, "dns-query")
    assert (q.address, q.value, q.port, q.transport, q.count) == (
        "10.0.0.5",
        "mail.example.org",
        53,
        "udp",
        2,
    )
    names = sorted((h.address, h.name) for h in of_type(items, HostName))
    assert names == [("192.0.2.25", "mail.example.org"), ("2001:db8::25", "mail.example.org")]
    assert {f.server_port for f in of_type(items, Flow)} == {53}


def test_http_host_and_user_agent_on_any_port(tmp_path: Path) -> None:
    """HTTP request headers give http-host and http-user-agent on the client address."""
    request = b"GET / HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: curl/8.0\r\n\r\n"
    packets = session(
        [(True, request[:20]), (True, request[20:]), (False, b"HTTP/1.1 200 OK\r\n\r\n")],
        sport=8081,
    ).packets
    items = read_all(write_pcap(tmp_path / "h.pcap", packets))
    assert [(o.address, o.value, o.port) for o in observations(items, "http-host")] == [
        ("10.0.0.5", "shop.example", 8081)
    ]
    assert [o.value for o in observations(items, "http-user-agent")] == ["curl/8.0"]


def client_hello(name: bytes) -> bytes:
    """A minimal TLS 1.2 ClientHello record carrying a server_name extension."""
    sni = struct.pack("!HBH", len(name) + 3, 0, len(name)) + name
    ext = struct.pack("!HH", 0, len(sni)) + sni
    body = (
        b"\x03\x03"
        + b"\x11" * 32
        + b"\x00"
        + b"\x00\x02\x13\x01"
        + b"\x01\x00"
        + struct.pack("!H", len(ext))
        + ext
    )
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def test_tls_sni(tmp_path: Path) -> None:
    """The server name of a ClientHello split over two segments is observed on the client."""
    hello = client_hello(b"login.example.com")
    packets = session([(True, hello)], sport=443, segment=30).packets
    items = read_all(write_pcap(tmp_path / "t.pcap", packets))
    assert [(o.address, o.value, o.port) for o in observations(items, "tls-sni")] == [
        ("10.0.0.5", "login.example.com", 443)
    ]


def test_many_connections_stay_bounded_and_add_up(tmp_path: Path) -> None:
    """With tiny tables, flows are emitted early yet their counters still add up."""
    packets = []
    for n in range(300):
        packets += session(
            [(True, b"q"), (False, b"r")],
            cport=20000 + n,
            sport=8000 + n % 50,
            start=T0 + n * 0.01,
            close=n % 2 == 0,
        ).packets
    items = read_all(
        write_pcap(tmp_path / "b.pcap", sorted(packets)), max_connections=10, max_flow_keys=5
    )
    flows = of_type(items, Flow)
    assert len(flows) > 1  # emitted in several parts
    assert sum(f.connections for f in flows) == 300
    assert sum(f.packets for f in flows) == len(packets)


def peak_memory(path: Path) -> int:
    """Peak traced allocation while reading a capture fully."""
    tracemalloc.start()
    try:
        read_all(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_capture(tmp_path: Path) -> None:
    """Four times the connections (closed ones retire) does not mean four times the memory."""
    turns = [(True, b"EHLO " + b"x" * 1400 + b"\r\n"), (False, b"250 " + b"y" * 1400 + b"\r\n")]
    peaks = []
    for count in (1000, 4000):  # 3 MB and 12 MB: both larger than the reader's buffer
        packets = []
        for n in range(count):
            start = T0 + n * 0.05
            packets += session(turns, cport=10000 + n, start=start).packets
        peaks.append(peak_memory(write_pcap(tmp_path / f"m{count}.pcap", packets)))
    assert peaks[1] < 1.5 * peaks[0]


def test_idle_connections_time_out(tmp_path: Path) -> None:
    """A connection silent past the idle timeout is retired (its Flow emitted) mid-capture."""
    idle = session([(True, b"hello")], sport=7000, start=T0, close=False).packets
    later = session([(True, b"EHLO x\r\nMAIL FROM:<a@b>\r\n")], sport=2525, start=T0 + 100).packets
    pcap = write_pcap(tmp_path / "i.pcap", idle + later)

    def order(idle_timeout: float) -> list[str]:
        items = read_all(pcap, idle_timeout=idle_timeout, max_flow_keys=1)
        return [f"flow:{i.server_port}" if isinstance(i, Flow) else type(i).__name__ for i in items]

    assert order(10.0).index("flow:7000") < order(10.0).index("SmtpTransaction")
    assert order(1000.0).index("flow:7000") > order(1000.0).index("SmtpTransaction")
