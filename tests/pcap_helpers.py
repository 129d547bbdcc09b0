"""Helpers for pcap reader tests: synthetic captures written with dpkt, live loopback capture."""

from __future__ import annotations

import gzip
import smtplib
import socket
import struct
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import dpkt
from aiosmtpd.controller import Controller

from rolecall.orchestrator.demo.lab_support import wait_listening
from rolecall.probes.passive.pcap.read import PcapSettings, read_pcap
from rolecall.probes.records import Item, ReadWarning, SmtpTransaction, SocksRequest

Frame = tuple[float, bytes]
T = TypeVar("T")


def ip_packet(src: str, dst: str, proto: int, l4: bytes) -> bytes:
    """Return an IPv4 or IPv6 packet carrying ``l4``."""
    if ":" in src:
        return bytes(
            dpkt.ip6.IP6(
                src=socket.inet_pton(socket.AF_INET6, src),
                dst=socket.inet_pton(socket.AF_INET6, dst),
                nxt=proto,
                hlim=64,
                plen=len(l4),
                data=l4,
            )
        )
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=proto, ttl=64, data=l4)
    ip.len = 20 + len(l4)
    return bytes(ip)


def link_frame(packet: bytes, link: str) -> bytes:
    """Wrap an IP packet in a link layer: eth, vlan, sll, sll2 or raw."""
    etype = 0x86DD if packet[0] >> 4 == 6 else 0x0800
    if link == "eth":
        return b"\x00" * 12 + struct.pack("!H", etype) + packet
    if link == "vlan":
        return b"\x00" * 12 + struct.pack("!HHH", 0x8100, 7, etype) + packet
    if link == "sll":
        return struct.pack("!HHH8sH", 0, 772, 6, b"\0" * 8, etype) + packet
    if link == "sll2":
        return struct.pack("!HHIHBB8s", etype, 0, 1, 772, 0, 6, b"\0" * 8) + packet
    return packet


LINKTYPES = {"eth": 1, "vlan": 1, "sll": 113, "sll2": 276, "raw": 101}


def tcp_segment(
    src: str, sport: int, dst: str, dport: int, seq: int, ack: int, flags: int, payload: bytes
) -> bytes:
    """Return an IP packet holding one TCP segment."""
    tcp = dpkt.tcp.TCP(
        sport=sport, dport=dport, seq=seq % (1 << 32), ack=ack, flags=flags, win=65535
    )
    tcp.data = payload
    return ip_packet(src, dst, 6, bytes(tcp))


def udp_datagram(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    """Return an IP packet holding one UDP datagram."""
    udp = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
    udp.ulen = 8 + len(payload)
    return ip_packet(src, dst, 17, bytes(udp))


@dataclass
class TcpSession:
    """Builds the packets of one TCP connection, segment by segment."""

    client: str
    cport: int
    server: str
    sport: int
    ts: float = 1_700_000_000.0
    cseq: int = 1000
    sseq: int = 5000
    packets: list[Frame] = field(default_factory=list)

    def _add(self, from_client: bool, flags: int, payload: bytes, seq: int | None = None) -> None:
        """Append one segment and advance the clock."""
        self.ts += 0.001
        if from_client:
            pkt = tcp_segment(
                self.client,
                self.cport,
                self.server,
                self.sport,
                self.cseq if seq is None else seq,
                self.sseq,
                flags,
                payload,
            )
        else:
            pkt = tcp_segment(
                self.server,
                self.sport,
                self.client,
                self.cport,
                self.sseq if seq is None else seq,
                self.cseq,
                flags,
                payload,
            )
        self.packets.append((self.ts, pkt))

    def handshake(self) -> TcpSession:
        """SYN, SYN-ACK, ACK."""
        self._add(True, dpkt.tcp.TH_SYN, b"")
        self.cseq += 1
        self._add(False, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK, b"")
        self.sseq += 1
        self._add(True, dpkt.tcp.TH_ACK, b"")
        return self

    def send(self, from_client: bool, data: bytes, segment: int = 1400) -> TcpSession:
        """Send ``data`` in order, cut into segments."""
        for i in range(0, len(data), segment):
            chunk = data[i : i + segment]
            self._add(from_client, dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, chunk)
            if from_client:
                self.cseq += len(chunk)
            else:
                self.sseq += len(chunk)
        return self

    def client_says(self, data: bytes) -> TcpSession:
        """Client sends ``data``."""
        return self.send(True, data)

    def server_says(self, data: bytes) -> TcpSession:
        """Server sends ``data``."""
        return self.send(False, data)

    def close(self) -> TcpSession:
        """FIN from both sides."""
        self._add(True, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK, b"")
        self.cseq += 1
        self._add(False, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK, b"")
        self.sseq += 1
        self._add(True, dpkt.tcp.TH_ACK, b"")
        return self


def write_pcap(
    path: Path, packets: Iterable[Frame], link: str = "eth", gz: bool = False, nano: bool = False
) -> Path:
    """Write IP packets as a classic pcap file with the given link layer."""
    opener = gzip.open if gz else open
    with opener(path, "wb") as fh:
        writer = dpkt.pcap.Writer(fh, linktype=LINKTYPES[link], nano=nano)
        for ts, pkt in packets:
            writer.writepkt(link_frame(pkt, link), ts=ts)
    return path


def write_pcapng(path: Path, packets: Iterable[Frame], link: str = "eth") -> Path:
    """Write IP packets as a pcapng file."""
    with open(path, "wb") as fh:
        writer = dpkt.pcapng.Writer(fh, linktype=LINKTYPES[link])
        for ts, pkt in packets:
            writer.writepkt(link_frame(pkt, link), ts=ts)
    return path


def read_all(path: Path, **settings: object) -> list[Item]:
    """Read a capture fully."""
    return list(read_pcap(path, PcapSettings(**settings)))  # type: ignore[arg-type]


def of_type(items: list[Item], kind: type[T]) -> list[T]:
    """Keep the items of one type."""
    return [i for i in items if isinstance(i, kind)]


def smtp(items: list[Item]) -> list[SmtpTransaction]:
    """The SMTP transactions among ``items``."""
    return of_type(items, SmtpTransaction)


def socks(items: list[Item]) -> list[SocksRequest]:
    """The SOCKS requests among ``items``."""
    return of_type(items, SocksRequest)


def warnings(items: list[Item]) -> list[ReadWarning]:
    """The warnings among ``items``."""
    return of_type(items, ReadWarning)


@contextmanager
def loopback_capture(path: Path, net: str) -> Iterator[Path]:
    """Record loopback traffic of ``net`` with tcpdump while the block runs."""
    proc = subprocess.Popen(
        [
            "tcpdump",
            "-i",
            "lo",
            "-U",
            "--immediate-mode",
            "-B",
            "16384",
            "-n",
            "-s",
            "0",
            "-w",
            str(path),
            "net",
            net,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()  # "listening on lo, ..." once the capture is open
    assert b"listening on" in line, line
    try:
        yield path
    finally:
        time.sleep(0.3)  # let the last packets of the block reach the file
        proc.terminate()
        proc.wait(timeout=10)
        proc.stderr.close()


def free_port(address: str) -> int:
    """Return a TCP port free on ``address``."""
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def small_mss_socket(source: str) -> socket.socket:
    """A TCP socket bound to ``source`` that sends Ethernet-sized segments (MSS 1400)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1400)
    sock.bind((source, 0))
    return sock


def socks5_connect(
    source: str, proxy: tuple[str, int], target: tuple[str, int], timeout: float = 5.0
) -> socket.socket:
    """Open a SOCKS5 tunnel (no authentication) from ``source`` through ``proxy`` to ``target``."""
    sock = small_mss_socket(source)
    sock.settimeout(timeout)
    sock.connect(proxy)
    sock.sendall(b"\x05\x01\x00")
    assert sock.recv(2) == b"\x05\x00"
    sock.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(target[0]) + struct.pack("!H", target[1]))
    reply = b""
    while len(reply) < 10:
        chunk = sock.recv(10 - len(reply))
        assert chunk, "proxy closed the connection"
        reply += chunk
    assert reply[1] == 0, f"SOCKS5 reply {reply[1]}"
    return sock


class SourcedSMTP(smtplib.SMTP):
    """smtplib client bound to a loopback source, optionally tunnelled through SOCKS5."""

    def __init__(self, source: str, proxy: tuple[str, int] | None = None) -> None:
        """Remember the source and proxy; connect() opens the socket."""
        self.source = source
        self.proxy = proxy
        super().__init__()

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        """Connect directly or through the proxy."""
        if self.proxy is not None:
            return socks5_connect(self.source, self.proxy, (host, port))
        sock = small_mss_socket(self.source)
        sock.settimeout(10.0)
        sock.connect((host, port))
        return sock


def message(sender: str, rcpt: str, subject: str, mailer: str, size: int) -> bytes:
    """A mail message with the headers the reader logs and a body of about ``size`` bytes."""
    body = b"".join(
        b"line %d of the message body, padding padding padding\r\n" % i
        for i in range(size // 50 + 1)
    )
    head = (
        f"From: Sender <{sender}>\r\nTo: <{rcpt}>\r\nSubject: {subject}\r\n"
        "Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@test>\r\n"
        f"X-Mailer: {mailer}\r\n\r\n"
    ).encode()
    return head + body


@contextmanager
def aiosmtpd_server(address: str) -> Iterator[tuple[str, int, list[bytes]]]:
    """Run an aiosmtpd server on ``address`` that keeps what it receives."""
    received: list[bytes] = []

    class Handler:
        async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
            self, server: object, session: object, envelope: object, address: str, options: object
        ) -> str:
            if address.startswith("refuse"):
                return "550 5.7.1 Relaying denied"
            envelope.rcpt_tos.append(address)  # type: ignore[attr-defined]
            return "250 OK"

        async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
            self, server: object, session: object, envelope: object
        ) -> str:
            received.append(envelope.content)  # type: ignore[attr-defined]
            return "250 Message accepted"

    port = free_port(address)
    controller = Controller(Handler(), hostname=address, port=port)
    controller.start()
    try:
        yield address, port, received
    finally:
        controller.stop()


@contextmanager
def microsocks(address: str) -> Iterator[tuple[str, int]]:
    """Run microsocks on ``address`` (outgoing connections bound to the same address)."""
    port = free_port(address)
    proc = subprocess.Popen(
        ["microsocks", "-i", address, "-p", str(port), "-b", address],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(address, port)
        yield address, port
    finally:
        proc.terminate()
        proc.wait(timeout=5)


@contextmanager
def tinyproxy(
    address: str, workdir: Path, basic_auth: tuple[str, str] | None = None
) -> Iterator[tuple[str, int]]:
    """Run tinyproxy on ``address`` (outgoing connections from it too), with BasicAuth if given."""
    port = free_port(address)
    conf = workdir / f"tinyproxy-{port}.conf"
    lines = [
        f"Port {port}",
        f"Listen {address}",
        f"Bind {address}",
        "Timeout 30",
        "MaxClients 20",
        "Allow 127.0.0.0/8",
        "DisableViaHeader Yes",
        "LogLevel Warning",
    ]
    if basic_auth:
        lines.append(f"BasicAuth {basic_auth[0]} {basic_auth[1]}")
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(
        ["tinyproxy", "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_listening(address, port)
        yield address, port
    finally:
        proc.terminate()
        proc.wait(timeout=5)


Turn = tuple[bool, bytes]


def session(
    turns: Iterable[Turn],
    client: str = "10.0.0.5",
    cport: int = 40000,
    server: str = "10.0.0.25",
    sport: int = 25,
    handshake: bool = True,
    close: bool = True,
    segment: int = 1400,
    start: float = 1_700_000_000.0,
) -> TcpSession:
    """Build a TCP session from (from_client, bytes) turns."""
    tcp = TcpSession(client, cport, server, sport, ts=start)
    if handshake:
        tcp.handshake()
    for from_client, data in turns:
        tcp.send(from_client, data, segment)
    if close:
        tcp.close()
    return tcp


def smtp_turns(*pairs: tuple[str, str], banner: str = "220 mx.example ESMTP") -> list[Turn]:
    """SMTP turns: the banner, then (client text, server text) pairs with CRLF line ends."""
    turns: list[Turn] = [(False, (banner + "\r\n").encode())]
    for c, s in pairs:
        if c:
            turns.append((True, c.replace("\n", "\r\n").encode()))
        if s:
            turns.append((False, s.replace("\n", "\r\n").encode()))
    return turns
