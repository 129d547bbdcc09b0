"""Connections being tracked and the per-day Flow aggregates they fold into.

A ``Conn`` is one TCP connection or UDP exchange between two endpoints. When it
ends (closed and lingered, idle past the timeout, or the capture ends) its
counters are added to the Flow of (client, server, server port, transport,
UTC day of its first packet).

Flow records are additive: the same key can be emitted more than once from one
capture when the table is flushed early to bound memory (``max_flow_keys``) or
when a day is over. Consumers add ``connections``, ``packets`` and ``bytes``,
take the earliest ``first_seen``, the latest ``last_seen`` and OR ``answered``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Final

from rolecall.probes.passive.pcap.reassembly import Reassembler
from rolecall.probes.passive.pcap.stream import StreamParser
from rolecall.probes.records import Flow

TCP: Final = 6
UDP: Final = 17
DAY: Final = 86400


class Conn:
    """One connection: endpoints (raw address bytes), counters and analysis state."""

    __slots__ = (
        "answered",
        "bytes",
        "c_addr",
        "c_port",
        "closed",
        "fins",
        "first",
        "gap_offset",
        "keys",
        "last",
        "packets",
        "parser",
        "proto",
        "r_client",
        "r_server",
        "s_addr",
        "s_port",
        "seen_client",
        "seen_server",
        "state",
        "syn_client",
        "syn_server",
    )

    def __init__(
        self, c_addr: bytes, c_port: int, s_addr: bytes, s_port: int, proto: int, ts: float
    ) -> None:
        """Start a connection at ``ts`` with no traffic counted yet."""
        self.c_addr, self.c_port, self.s_addr, self.s_port = c_addr, c_port, s_addr, s_port
        self.proto = proto
        self.first = self.last = ts
        self.packets = self.bytes = 0
        self.answered = False
        self.closed = False
        self.fins = 0
        self.state = 0  # 0 undecided, 1 parsed, 2 left alone
        self.seen_client = self.seen_server = 0  # payload packets looked at for detection
        self.syn_client: int | None = None
        self.syn_server: int | None = None
        self.r_client: Reassembler | None = None
        self.r_server: Reassembler | None = None
        self.parser: StreamParser | None = None
        self.keys: tuple[bytes, bytes] = (b"", b"")
        self.gap_offset = -1  # file offset of the packet that revealed the first gap

    def swap(self) -> None:
        """Exchange client and server (the first guess of who is who was wrong)."""
        self.c_addr, self.s_addr = self.s_addr, self.c_addr
        self.c_port, self.s_port = self.s_port, self.c_port
        self.syn_client, self.syn_server = self.syn_server, self.syn_client
        self.seen_client, self.seen_server = self.seen_server, self.seen_client
        self.r_client, self.r_server = self.r_server, self.r_client
        self.keys = (self.keys[1], self.keys[0])


def address(raw: bytes) -> str:
    """Render a raw IPv4 or IPv6 address."""
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


class FlowTable:
    """Per-day Flow aggregates, held until flushed."""

    def __init__(self, max_keys: int) -> None:
        """Start empty; more than ``max_keys`` aggregates triggers an early flush."""
        self.max_keys = max_keys
        self.flows: dict[tuple[bytes, bytes, int, int, int], list[float]] = {}
        self.names: dict[bytes, str] = {}

    def add(self, conn: Conn) -> None:
        """Fold a finished connection into its day's aggregate."""
        key = (conn.c_addr, conn.s_addr, conn.s_port, conn.proto, int(conn.first // DAY))
        agg = self.flows.get(key)
        if agg is None:
            self.flows[key] = [1, conn.packets, conn.bytes, conn.first, conn.last, conn.answered]
        else:
            agg[0] += 1
            agg[1] += conn.packets
            agg[2] += conn.bytes
            agg[3] = min(agg[3], conn.first)
            agg[4] = max(agg[4], conn.last)
            agg[5] = agg[5] or conn.answered

    def full(self) -> bool:
        """Say whether the table should be flushed to bound memory."""
        return len(self.flows) >= self.max_keys

    def flush(self, before_day: int | None = None) -> Iterator[Flow]:
        """Emit and forget aggregates (only those of days before ``before_day`` if given)."""
        keys = [k for k in self.flows if before_day is None or k[4] < before_day]
        for key in keys:
            c_addr, s_addr, port, proto, day = key
            conns, packets, size, first, last, answered = self.flows.pop(key)
            yield Flow(
                client=self.name(c_addr),
                server=self.name(s_addr),
                server_port=port,
                transport="tcp" if proto == TCP else "udp",
                day=date.fromordinal(date(1970, 1, 1).toordinal() + day),
                source="pcap",
                first_seen=datetime.fromtimestamp(first, UTC),
                last_seen=datetime.fromtimestamp(last, UTC),
                connections=int(conns),
                packets=int(packets),
                bytes=int(size),
                answered=bool(answered),
            )

    def name(self, raw: bytes) -> str:
        """Render an address, remembering recent renderings."""
        text = self.names.get(raw)
        if text is None:
            if len(self.names) > self.max_keys:
                self.names.clear()
            text = self.names[raw] = address(raw)
        return text
