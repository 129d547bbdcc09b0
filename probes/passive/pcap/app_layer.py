"""Small application-layer readers: HTTP request headers, TLS SNI, DNS messages.

HTTP and TLS are read from the first request / ClientHello of a connection
only (enough for "http-host", "http-user-agent" and "tls-sni" on the client),
then the connection is left alone.
"""

from __future__ import annotations

import socket
import struct
from typing import Final

import dpkt

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


def dns_records(
    payload: bytes, client: str, server: str, from_client: bool, ts: float
) -> list[Item]:
    """Return a DNS query as a "dns-query" observation and answered A/AAAA as host names."""
    try:
        msg = dpkt.dns.DNS(payload)
    except (dpkt.UnpackError, IndexError, ValueError, struct.error):
        return []
    out: list[Item] = []
    if not msg.qd:
        return out
    qname = text(msg.qd[0].name.encode("utf-8", "surrogateescape"))[:255].lower()
    if from_client and msg.qr == dpkt.dns.DNS_Q:
        out.append(
            Observation(
                address=client,
                kind="dns-query",
                source="pcap",
                seen=utc(ts),
                port=53,
                transport="udp",
                value=qname,
                detail=detail(server=server, qtype=msg.qd[0].type),
            )
        )
    elif not from_client and msg.qr == dpkt.dns.DNS_R:
        seen = utc(ts)
        for rr in msg.an:
            if rr.type == dpkt.dns.DNS_A and len(rr.rdata) == 4:
                address = socket.inet_ntop(socket.AF_INET, rr.rdata)
            elif rr.type == dpkt.dns.DNS_AAAA and len(rr.rdata) == 16:
                address = socket.inet_ntop(socket.AF_INET6, rr.rdata)
            else:
                continue
            for name in sorted({qname, str(rr.name).lower()}):
                out.append(HostName(address=address, name=name, source="pcap", seen=seen))
    return out
