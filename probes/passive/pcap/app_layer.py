"""Small application-layer readers: HTTP request headers, TLS SNI, DNS messages.

HTTP and TLS are read from the first request / ClientHello of a connection
only (enough for "http-host", "http-user-agent" and "tls-sni" on the client),
then the connection is left alone.
"""

from __future__ import annotations

import socket
import struct
from typing import Final

from rolecall.probes.passive.pcap.stream import PcapSettings, StreamContext, detail, text, utc
from rolecall.probes.records import HostName, Item, Observation

MAX_HTTP_HEAD: Final = 16384
MAX_HELLO: Final = 16384 + 5


class HttpStream:
    """Reads the headers of the first HTTP request a client sends."""

    def __init__(self, ctx: StreamContext, settings: PcapSettings) -> None:
        """Wait for the request head."""
        self.ctx = ctx
        self.buf = b""
        self.done = False

    def feed(self, from_client: bool, data: bytes, ts: float) -> list[Item]:
        """Collect client bytes until the blank line ending the head."""
        if self.done or not from_client:
            return []
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0 and len(self.buf) < MAX_HTTP_HEAD:
            return []
        self.done = True
        return self._observations(self.buf[: end if end >= 0 else MAX_HTTP_HEAD], ts)

    def _observations(self, head: bytes, ts: float) -> list[Item]:
        """Return Host and User-Agent of a request head as observations."""
        out: list[Item] = []
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            kind = {b"host": "http-host", b"user-agent": "http-user-agent"}.get(name.lower())
            if kind and value.strip():
                out.append(self._observation(kind, text(value.strip())[:1024], ts))
        return out

    def _observation(self, kind: str, value: str, ts: float) -> Observation:
        """One observation about the client of this stream."""
        return Observation(
            address=self.ctx.client,
            kind=kind,
            source="pcap",
            seen=utc(ts),
            port=self.ctx.server_port,
            transport="tcp",
            value=value,
            detail=detail(server=self.ctx.server, via_proxy=self.ctx.via_proxy),
        )

    def gap(self, from_client: bool, size: int, ts: float) -> list[Item]:
        """A hole in the request head: give up on it."""
        self.done = True
        return []

    def finish(self, ts: float) -> list[Item]:
        """Connection over: read whatever head arrived."""
        if self.done:
            return []
        self.done = True
        return self._observations(self.buf, ts)


class TlsHelloStream(HttpStream):
    """Reads the server name (SNI) from a client's TLS ClientHello."""

    def feed(self, from_client: bool, data: bytes, ts: float) -> list[Item]:
        """Collect the first TLS record, then look for the server_name extension."""
        if self.done or not from_client:
            return []
        self.buf += data
        if len(self.buf) < 5:
            return []
        need = 5 + (self.buf[3] << 8 | self.buf[4])
        if len(self.buf) < min(need, MAX_HELLO):
            return []
        self.done = True
        name = sni(self.buf[5:need])
        return [self._observation("tls-sni", name, ts)] if name else []

    def finish(self, ts: float) -> list[Item]:
        """Connection over before the hello was complete: nothing to say."""
        self.done = True
        return []


def sni(hello: bytes) -> str:
    """Return the host name in a ClientHello handshake message, or ""."""
    try:
        if hello[0] != 1:
            return ""
        pos = 4 + 2 + 32  # handshake header, version, random
        pos += 1 + hello[pos]  # session id
        pos += 2 + struct.unpack_from("!H", hello, pos)[0]  # cipher suites
        pos += 1 + hello[pos]  # compression methods
        end = min(len(hello), pos + 2 + struct.unpack_from("!H", hello, pos)[0])
        pos += 2
        while pos + 4 <= end:
            etype, elen = struct.unpack_from("!HH", hello, pos)
            if etype == 0:
                # server_name_list length (2), name type (1), name length (2), name
                nlen = struct.unpack_from("!H", hello, pos + 7)[0]
                return text(hello[pos + 9 : pos + 9 + nlen])[:255]
            pos += 4 + elen
    except (IndexError, struct.error):
        return ""
    return ""


_DNS_HEADER: Final = struct.Struct("!HHHHHH")
_DNS_RR: Final = struct.Struct("!HHIH")
_DNS_QR: Final = 0x8000
DNS_A: Final = 1
DNS_AAAA: Final = 28
_KEPT_AS_IS: Final = frozenset({DNS_A, DNS_AAAA, 41})  # and OPT: dpkt reads nothing in them

DnsMessage = tuple[bool, str, int, list[tuple[int, str, bytes]]]
"""A DNS message as read here: (a response, first question's name and type, answers' type,
name and data)."""


def dns_records(
    payload: bytes, client: str, server: str, from_client: bool, ts: float
) -> list[Item]:
    """Return a DNS query as a "dns-query" observation and answered A/AAAA as host names."""
    msg = dns_plain(payload)
    if msg is None:
        msg = _dns_by_dpkt(payload)
        if msg is None:
            return []
    response, question, qtype, answers = msg
    out: list[Item] = []
    qname = text(question.encode("utf-8", "surrogateescape"))[:255].lower()
    if from_client and not response:
        out.append(
            Observation(
                address=client,
                kind="dns-query",
                source="pcap",
                seen=utc(ts),
                port=53,
                transport="udp",
                value=qname,
                detail=detail(server=server, qtype=qtype),
            )
        )
    elif not from_client and response:
        seen = utc(ts)
        for rtype, rname, rdata in answers:
            if rtype == DNS_A and len(rdata) == 4:
                address = socket.inet_ntop(socket.AF_INET, rdata)
            elif rtype == DNS_AAAA and len(rdata) == 16:
                address = socket.inet_ntop(socket.AF_INET6, rdata)
            else:
                continue
            for name in sorted({qname, rname.lower()}):
                out.append(HostName(address=address, name=name, source="pcap", seen=seen))
    return out


def _dns_by_dpkt(payload: bytes) -> DnsMessage | None:
    """Read any DNS message with dpkt; None if it cannot be read or asks nothing."""
    import dpkt  # noqa: PLC0415 (needed for unusual messages only: 30 ms of start-up)

    try:
        msg = dpkt.dns.DNS(payload)
    except (dpkt.UnpackError, IndexError, ValueError, struct.error):
        return None
    if not msg.qd:
        return None
    answers = [(rr.type, str(rr.name), rr.rdata) for rr in msg.an]
    return bool(msg.qr), msg.qd[0].name, msg.qd[0].type, answers


def dns_plain(payload: bytes) -> DnsMessage | None:
    """Read a plain DNS message exactly as dpkt would, at a fraction of its cost.

    Plain: one question, and records of types whose data dpkt keeps as it is (A, AAAA,
    OPT), every name and length sound. Anything else is None, and left to dpkt.
    """
    if len(payload) < 12:
        return None
    _, flags, questions, *sections = _DNS_HEADER.unpack_from(payload)
    if questions != 1:
        return None
    got = _dns_name(payload, 12)
    if got is None or got[1] + 4 > len(payload):
        return None
    question, pos = got
    qtype = payload[pos] << 8 | payload[pos + 1]
    pos += 4
    answers: list[tuple[int, str, bytes]] = []
    for index in range(sum(sections)):
        got = _dns_name(payload, pos)
        if got is None or got[1] + 10 > len(payload):
            return None
        name, pos = got
        rtype, _, _, size = _DNS_RR.unpack_from(payload, pos)
        pos += 10
        if rtype not in _KEPT_AS_IS or pos + size > len(payload):
            return None
        if index < sections[0]:
            answers.append((rtype, name, payload[pos : pos + size]))
        pos += size
    return bool(flags & _DNS_QR), question, qtype, answers


def _dns_name(buf: bytes, pos: int) -> tuple[str, int] | None:
    """A name at ``pos`` and where what follows it starts, read as dpkt's ``unpack_name``
    reads it (pointers only backwards, at most 255 bytes, UTF-8); None where dpkt fails."""
    labels: list[bytes] = []
    after = 0
    start = pos
    length = 0
    while True:
        if pos >= len(buf):
            return None
        n = buf[pos]
        if n == 0:
            pos += 1
            break
        if n & 0xC0 == 0xC0:
            if pos + 2 > len(buf):
                return None
            pointer = (n << 8 | buf[pos + 1]) & 0x3FFF
            if pointer >= start:
                return None
            pos += 2
            after = after or pos
            start = pos = pointer
        elif n & 0xC0 == 0:
            labels.append(buf[pos + 1 : pos + 1 + n])
            length += n + 1
            if length > 255:
                return None
            pos += 1 + n
        else:
            return None
    try:
        return b".".join(labels).decode("utf-8"), after or pos
    except UnicodeDecodeError:
        return None
