"""read_pcap: every record a capture file supports, read in one streaming pass.

Design (filter first): each packet's record header is parsed with ``struct``
and a few IP/TCP/UDP header bytes are peeked at to update the counters of its
connection. Only connections whose first payload looks like SMTP, SOCKS, HTTP
or TLS (by content, on any port) are reassembled and parsed; everything else
costs a dictionary lookup and a few additions per packet. Connections are
retired when closed (after a short linger), idle past ``idle_timeout``, or when
too many are open, so memory stays bounded however large the file.

Yields (source "pcap"): Flow (see ``flow_table`` for their additive
semantics), SmtpTransaction (``relayed_for`` set on a proxy's own copy of a
tunnelled message, see ``egress``), SocksRequest, HostName (answered A/AAAA), and
Observation kinds "dns-query" (value: the name), "http-host",
"http-user-agent", "tls-sni" (on the client address, port = server port),
"smtp-rcpt-refused" (value: recipient, detail: server and reply) and
"proxy-egress" (see ``pcap_egress``). Observations are tallied per natural key
(``count``, ``seen`` = first sighting) and emitted at the end. ReadWarning for
damaged packets and for stream content that could not be reassembled.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Final

from rolecall.probes.passive.pcap.app_layer import dns_records
from rolecall.probes.passive.pcap.capture_file import PacketSource, ip_offset
from rolecall.probes.passive.pcap.egress import EgressLinker
from rolecall.probes.passive.pcap.flow_table import TCP, UDP, Conn, FlowTable
from rolecall.probes.passive.pcap.observations import ObservationTally
from rolecall.probes.passive.pcap.stream import PcapSettings
from rolecall.probes.passive.pcap.tcp_streams import StreamAnalyser, make_parser
from rolecall.probes.passive.worker import WorkerItems
from rolecall.probes.records import (
    ConnectRequest,
    HostName,
    Item,
    Observation,
    ReadWarning,
    SmtpTransaction,
    SocksRequest,
)

__all__ = ["PcapSettings", "make_parser", "read_pcap", "read_serially"]

SWEEP_EVERY: Final = 10.0
MAX_TS: Final = 253402300799.0  # 9999-12-31
_SEQ = struct.Struct("!I").unpack_from
_PORTS = struct.Struct("!HH").unpack_from
V6_EXTENSIONS: Final = frozenset({0, 43, 44, 60})


def read_pcap(path: Path, settings: PcapSettings) -> Iterator[Item]:
    """Yield the records and warnings of one pcap/pcapng(.gz) file; InputError if unreadable.

    A capture of ``settings.worker_min_bytes`` or more is read in a second process
    (see ``rolecall.probes.passive.worker``) that starts at this call, so the caller can get
    ready to store while the reading has begun; close the iterator to stop it early.
    """
    if _wants_worker(path, settings):
        return WorkerItems(partial(read_serially, path, settings), str(path))
    return read_serially(path, settings)


def read_serially(path: Path, settings: PcapSettings) -> Iterator[Item]:
    """Yield what ``read_pcap`` yields, read in this process."""
    return _Ingest(path, settings).run()


def _wants_worker(path: Path, settings: PcapSettings) -> bool:
    """Whether a capture is large enough to be worth a second process."""
    threshold = settings.worker_min_bytes
    try:
        return threshold is not None and path.stat().st_size >= threshold
    except OSError:
        return False  # the reader says why it cannot be read


class _Ingest:
    """The state of one pass over one file."""

    def __init__(self, path: Path, settings: PcapSettings) -> None:
        """Prepare empty tables."""
        self.path = path
        self.where = str(path)
        self.settings = settings
        self.conns: dict[bytes, tuple[Conn, bool]] = {}
        self.flows = FlowTable(settings.max_flow_keys)
        self.tally = ObservationTally(settings.max_flow_keys)
        self.linker = EgressLinker(settings.egress_window)
        self.out: list[Item] = []
        self.tcp = StreamAnalyser(
            settings, self.where, self.flows, self.conns, self.collect, self.out
        )
        self.damaged = 0
        self.first_damage = -1
        self.host_names: set[tuple[str, str]] = set()

    def run(self) -> Iterator[Item]:  # noqa: PLR0915 (the hot path: calls cost time)
        """Yield every record of the file: the packet loop, kept in one function for speed."""
        source = PacketSource(self.path, self.settings.max_packet)
        warnings, out, conns = source.warnings, self.out, self.conns
        tcp = self.tcp
        next_sweep, max_ts, payload, new_conn = 0.0, MAX_TS, tcp.payload, self.new_conn
        for batch in source.batches():
            for ts, linktype, frame, offset in batch:
                try:
                    if linktype == 1 and frame[12] == 8 and frame[13] == 0:
                        ip = 14
                    else:
                        ip = ip_offset(linktype, frame)
                        if ip < 0:
                            continue
                    if not 0.0 <= ts < max_ts:
                        raise ValueError
                    if ts > next_sweep:
                        tcp.offset = offset
                        self.sweep(ts)
                        next_sweep = ts + SWEEP_EVERY
                    b0 = frame[ip]
                    if b0 >> 4 == 4:
                        if frame[ip + 6] & 0x1F or frame[ip + 7]:
                            continue  # a later fragment: no transport header
                        proto = frame[ip + 9]
                        iplen = frame[ip + 2] << 8 | frame[ip + 3]
                        l4 = ip + ((b0 & 15) << 2)
                        if iplen < 20 or l4 < ip + 20:
                            raise ValueError
                        a0, a1 = ip + 12, ip + 20
                    elif b0 >> 4 == 6:
                        proto = frame[ip + 6]
                        iplen = 40 + (frame[ip + 4] << 8 | frame[ip + 5])
                        l4 = ip + 40
                        a0, a1 = ip + 8, ip + 40
                        if proto in V6_EXTENSIONS:
                            l4, proto = self.v6_extensions(frame, l4, proto)
                    else:
                        raise ValueError  # an IP version that is neither 4 nor 6
                    end = ip + iplen
                    # The connection key is the addresses then the ports: one slice when
                    # the transport header follows the addresses (no IP options).
                    key = frame[a0 : l4 + 4] if l4 == a1 else frame[a0:a1] + frame[l4 : l4 + 4]
                    if proto == 6:
                        flags = frame[l4 + 13]
                        entry = conns.get(key)
                        if entry is None or (flags & 2 and entry[0].closed):
                            entry = new_conn(key, a1 - a0, flags, ts, 6)
                        conn, fwd = entry
                        conn.packets += 1
                        conn.bytes += iplen
                        conn.last = ts
                        if not fwd:
                            conn.answered = True
                        if flags & 2:
                            self.syn(conn, fwd, _SEQ(frame, l4 + 4)[0])
                        state = conn.state
                        if state != 2:
                            start = l4 + ((frame[l4 + 12] >> 4) << 2)
                            if end <= start:
                                if state == 1:
                                    other = conn.r_server if fwd else conn.r_client
                                    if other is not None and other.pending:
                                        tcp.acked(conn, fwd, frame, l4, ts, offset)
                            elif state == 1 and end <= len(frame):
                                # in-order data of a parsed stream, inline: the common case
                                parser, r, other = (
                                    (conn.parser, conn.r_client, conn.r_server)
                                    if fwd
                                    else (conn.parser, conn.r_server, conn.r_client)
                                )
                                seq = _SEQ(frame, l4 + 4)[0]
                                if (
                                    parser is not None
                                    and r is not None
                                    and r.next_seq == seq
                                    and not r.pending
                                    and (other is None or not other.pending)
                                ):
                                    r.next_seq = (seq + end - start) & 0xFFFFFFFF
                                    items = parser.feed(fwd, frame[start:end], ts)
                                    if items:
                                        self.collect(items, ts)
                                    if parser.done:
                                        tcp.finish(conn, ts)
                                else:
                                    payload(conn, fwd, frame, l4, start, end, ts, offset)
                            else:
                                payload(conn, fwd, frame, l4, start, end, ts, offset)
                        if flags & 5:
                            self.control(conn, fwd, flags, ts)
                    elif proto == 17:
                        entry = conns.get(key)
                        if entry is None:
                            entry = new_conn(key, a1 - a0, 0, ts, 17)
                        conn, fwd = entry
                        conn.packets += 1
                        conn.bytes += iplen
                        conn.last = ts
                        if not fwd:
                            conn.answered = True
                        if conn.s_port == 53:
                            self.dns(conn, fwd, frame[l4 + 8 : end], ts)
                except (IndexError, ValueError, struct.error):
                    self.damage(offset)
            if warnings:
                yield from warnings
                warnings.clear()
            if out:
                yield from out
                out.clear()
            if batch:
                tcp.offset = batch[-1][3]
        yield from warnings
        yield from self.close_all()

    def v6_extensions(self, frame: bytes, pos: int, nxt: int) -> tuple[int, int]:
        """Skip IPv6 extension headers; a later fragment has no transport header (-1)."""
        for _ in range(8):
            if nxt not in V6_EXTENSIONS:
                break
            if nxt == 44:
                if (frame[pos + 2] << 8 | frame[pos + 3]) & 0xFFF8:
                    return pos, -1
                nxt, pos = frame[pos], pos + 8
            else:
                nxt, pos = frame[pos], pos + 8 + frame[pos + 1] * 8
        return pos, nxt

    def damage(self, offset: int) -> None:
        """Count a packet too damaged to decode."""
        self.damaged += 1
        if self.first_damage < 0:
            self.first_damage = offset

    def new_conn(
        self, key: bytes, size: int, flags: int, ts: float, proto: int
    ) -> tuple[Conn, bool]:
        """Track a connection keyed by addresses (``size`` bytes) then ports; find its client."""
        if len(key) < size + 4:
            raise ValueError  # the packet ends inside the addresses or the ports
        half = size // 2
        src, dst, ports = key[:half], key[half:size], key[size:]
        sport, dport = _PORTS(ports)
        if flags & 2:
            src_is_client = not flags & 0x10
        elif proto == UDP and (sport == 53 or dport == 53):
            src_is_client = dport == 53
        elif sport < 1024 <= dport:
            src_is_client = False
        else:
            src_is_client = True
        fkey, rkey = key, dst + src + ports[2:] + ports[:2]
        if src_is_client:
            conn = Conn(src, sport, dst, dport, proto, ts)
            conn.keys = (fkey, rkey)
        else:
            conn = Conn(dst, dport, src, sport, proto, ts)
            conn.keys = (rkey, fkey)
        old = self.conns.get(fkey)
        if old is not None:
            self.retire(old[0])
        self.conns[conn.keys[0]] = (conn, True)
        self.conns[conn.keys[1]] = (conn, False)
        if len(self.conns) > 2 * self.settings.max_connections:
            self.evict()
        if proto == TCP and flags & 0x12 == 2:
            self.collect(
                self.linker.started(
                    self.flows.name(conn.c_addr),
                    conn.c_port,
                    self.flows.name(conn.s_addr),
                    conn.s_port,
                    ts,
                ),
                ts,
            )
        return conn, src_is_client

    def syn(self, conn: Conn, fwd: bool, seq: int) -> None:
        """Remember a side's initial sequence number."""
        if fwd:
            conn.syn_client = seq
        else:
            conn.syn_server = seq

    def control(self, conn: Conn, fwd: bool, flags: int, ts: float) -> None:
        """Handle FIN and RST: a connection closed by both sides or reset is finished."""
        if flags & 1:
            conn.fins |= 1 if fwd else 2
        if flags & 4 or conn.fins == 3:
            conn.closed = True
            if conn.state == 1:
                self.tcp.finish(conn, ts)

    def collect(self, items: Sequence[Item], ts: float) -> None:
        """Route parser output: observations to the tally, requests to the egress linker.

        Mail read on a proxy's own connection that carries a client's tunnel is marked
        ``relayed_for`` that client: the same message, not one more.
        """
        for item in items:
            if isinstance(item, Observation):
                self.out.extend(self.tally.add(item))
                continue
            if isinstance(item, SocksRequest | ConnectRequest):
                for obs in self.linker.request(item, item.ts.timestamp()):
                    self.out.extend(self.tally.add(obs))
            elif isinstance(item, SmtpTransaction) and self.linker.links:
                self.out.append(self.linker.marked(item))
                continue
            self.out.append(item)

    def dns(self, conn: Conn, fwd: bool, payload: bytes, ts: float) -> None:
        """Read a DNS message; host names are reported once per capture (bounded)."""
        client, server = self.flows.name(conn.c_addr), self.flows.name(conn.s_addr)
        for item in dns_records(payload, client, server, fwd, ts):
            if isinstance(item, HostName):
                self.linker.learn_name(item.name, item.address)
                key = (item.address, item.name)
                if key in self.host_names:
                    continue
                if len(self.host_names) >= self.settings.max_flow_keys:
                    self.host_names.clear()
                self.host_names.add(key)
                self.out.append(item)
            elif isinstance(item, Observation):
                self.out.extend(self.tally.add(item))

    def retire(self, conn: Conn) -> None:
        """Forget a connection: finish its parser and fold its counters into the flows."""
        if conn.state == 1:
            self.tcp.finish(conn, conn.last)
        if self.linker.links and conn.proto == TCP:
            self.linker.forget(
                self.flows.name(conn.c_addr),
                conn.c_port,
                self.flows.name(conn.s_addr),
                conn.s_port,
            )
        for key in conn.keys:
            entry = self.conns.get(key)
            if entry is not None and entry[0] is conn:
                del self.conns[key]
        self.flows.add(conn)
        if self.flows.full():
            self.out.extend(self.flows.flush())

    def sweep(self, now: float) -> None:
        """Retire idle and closed connections, emit finished days and expire links."""
        idle, linger = now - self.settings.idle_timeout, now - self.settings.closed_linger
        stale = [
            conn
            for key, (conn, fwd) in self.conns.items()
            if fwd and (conn.last < idle or (conn.closed and conn.last < linger))
        ]
        for conn in stale:
            self.retire(conn)
        self.out.extend(self.flows.flush(before_day=int(idle // 86400)))
        self.linker.expire(now)

    def evict(self) -> None:
        """Too many connections: retire the least recently active half."""
        conns = sorted({id(c): c for c, _ in self.conns.values()}.values(), key=lambda c: c.last)
        for conn in conns[: len(conns) // 2]:
            self.retire(conn)

    def close_all(self) -> Iterator[Item]:
        """End of file: retire everything and emit what is held."""
        for conn in list({id(c): c for c, _ in self.conns.values()}.values()):
            self.retire(conn)
        yield from self.out
        self.out.clear()
        yield from self.flows.flush()
        yield from self.tally.flush()
        if self.damaged:
            yield ReadWarning(
                f"{self.where}@{self.first_damage}",
                f"{self.damaged} packet(s) too damaged to decode were skipped "
                "(the first at this offset)",
            )
