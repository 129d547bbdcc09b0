"""The parsed part of a capture: TCP streams chosen by content, reassembled, handed to parsers.

``StreamAnalyser`` looks at the first payloads of each connection (``detect``),
and for SMTP, SOCKS, HTTP and TLS keeps a ``Reassembler`` per direction whose
in-order bytes and gaps go to the protocol's parser. Holes are given up on when
the connection ends, when the buffer is full, or when the peer acknowledges
bytes the capture never had (so both directions stay in step). Each stream
direction with holes is reported once, as a ReadWarning about the traffic
(``traffic``: a sensor that missed packets wrote a sound file).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

from rolecall.probes.passive.pcap.app_layer import HttpStream, TlsHelloStream
from rolecall.probes.passive.pcap.flow_table import Conn, FlowTable
from rolecall.probes.passive.pcap.http_connect import HttpConnectStream
from rolecall.probes.passive.pcap.reassembly import Chunk, Reassembler
from rolecall.probes.passive.pcap.smtp import SmtpStream
from rolecall.probes.passive.pcap.socks import SocksStream
from rolecall.probes.passive.pcap.stream import PcapSettings, StreamContext, StreamParser, detect
from rolecall.probes.records import Item, ReadWarning

DETECT_PACKETS = 4
_SEQ = struct.Struct("!I").unpack_from


def make_parser(kind: str, ctx: StreamContext, settings: PcapSettings) -> StreamParser | None:
    """Return the parser for a detected protocol."""
    if kind == "smtp":
        return SmtpStream(ctx, settings)
    if kind == "socks":
        return SocksStream(ctx, settings, make_parser)
    if kind == "http":
        return HttpStream(ctx, settings)
    if kind == "http-connect":
        return HttpConnectStream(ctx, settings, make_parser)
    if kind == "tls":
        return TlsHelloStream(ctx, settings)
    return None


class StreamAnalyser:
    """Detection, reassembly and parsing for the connections of one capture."""

    def __init__(
        self,
        settings: PcapSettings,
        where: str,
        flows: FlowTable,
        conns: dict[bytes, tuple[Conn, bool]],
        collect: Callable[[Sequence[Item], float], None],
        out: list[Item],
    ) -> None:
        """Share the ingest's tables; parser output goes to ``collect``, warnings to ``out``."""
        self.settings = settings
        self.where = where
        self.flows = flows
        self.conns = conns
        self.collect = collect
        self.out = out
        self.offset = 0  # of a recent packet, for warnings raised outside the packet loop

    def payload(
        self,
        conn: Conn,
        fwd: bool,
        frame: bytes,
        l4: int,
        start: int,
        end: int,
        ts: float,
        offset: int,
    ) -> None:
        """Look at a TCP payload: detect the protocol, then reassemble and parse."""
        data = frame[start:end]
        if not data:
            return
        seq = _SEQ(frame, l4 + 4)[0]
        if conn.state == 0:
            isn = conn.syn_client if fwd else conn.syn_server
            if isn is not None and seq != (isn + 1) & 0xFFFFFFFF:
                self.early(conn, fwd, seq, data, ts, offset)
                return
            fwd = self.detect(conn, fwd, data, offset)
            if conn.state != 1:
                return
        parser = conn.parser
        reassembler = conn.r_client if fwd else conn.r_server
        if parser is None or reassembler is None:
            return
        other = conn.r_server if fwd else conn.r_client
        if other is not None and other.pending:
            self.acked(conn, fwd, frame, l4, ts, offset)
        if reassembler.next_seq == seq and not reassembler.pending and end - start == len(data):
            # the common case, in order and complete: no need for the general path
            reassembler.next_seq = (seq + len(data)) & 0xFFFFFFFF
            items = parser.feed(fwd, data, ts)
            if items:
                self.collect(items, ts)
            if parser.done:
                self.finish(conn, ts)
            return
        chunks = reassembler.segment(seq, data)
        if end - start > len(data):  # cut by the snap length
            chunks += reassembler.skip_to((seq + end - start) & 0xFFFFFFFF)
        self.deliver(conn, fwd, chunks, ts, offset)

    def deliver(self, conn: Conn, fwd: bool, chunks: list[Chunk], ts: float, offset: int) -> None:
        """Hand reassembled data and gaps of one direction to the connection's parser."""
        parser = conn.parser
        if parser is None:
            return
        for chunk in chunks:
            if parser.done:
                break
            if isinstance(chunk, bytes):
                self.collect(parser.feed(fwd, chunk, ts), ts)
            else:
                if conn.gap_offset < 0:
                    conn.gap_offset = offset
                self.collect(parser.gap(fwd, chunk, ts), ts)
        if parser.done:
            self.finish(conn, ts)

    def early(self, conn: Conn, fwd: bool, seq: int, data: bytes, ts: float, offset: int) -> None:
        """A reordered segment before anything was decided: reassemble, decide on in-order bytes."""
        isn = conn.syn_client if fwd else conn.syn_server
        reassembler = conn.r_client if fwd else conn.r_server
        if reassembler is None:
            reassembler = Reassembler(
                self.settings.max_stream_buffer, ((isn or 0) + 1) & 0xFFFFFFFF
            )
            if fwd:
                conn.r_client = reassembler
            else:
                conn.r_server = reassembler
        chunks = reassembler.segment(seq, data)
        first = b"".join(c for c in chunks if isinstance(c, bytes))
        if not first:
            return
        fwd = self.detect(conn, fwd, first, offset)
        if conn.state == 1:
            self.deliver(conn, fwd, chunks, ts, offset)

    def acked(self, conn: Conn, fwd: bool, frame: bytes, l4: int, ts: float, offset: int) -> None:
        """The sender acknowledges bytes the capture lacks: give up waiting for them."""
        other = conn.r_server if fwd else conn.r_client
        if other is None or not other.pending or not frame[l4 + 13] & 0x10:
            return
        chunks = other.acked(_SEQ(frame, l4 + 8)[0])
        if chunks:
            self.deliver(conn, not fwd, chunks, ts, offset)

    def detect(self, conn: Conn, fwd: bool, data: bytes, offset: int = -1) -> bool:
        """Decide from a first payload whether to parse this connection; return (new) fwd."""
        if fwd:
            conn.seen_client += 1
        else:
            conn.seen_server += 1
        kind = detect(fwd, data)
        if not kind and conn.syn_client is None and conn.syn_server is None:
            kind = detect(not fwd, data)
            if kind:
                self.swap(conn)
                fwd = not fwd
        if not kind:
            if conn.seen_client + conn.seen_server >= DETECT_PACKETS or (
                conn.seen_client and conn.seen_server
            ):
                conn.state = 2
                conn.r_client = conn.r_server = None
            return fwd
        ctx = StreamContext(
            client=self.flows.name(conn.c_addr),
            client_port=conn.c_port,
            server=self.flows.name(conn.s_addr),
            server_port=conn.s_port,
            where=self.where,
            offset=offset,
        )
        conn.parser = make_parser(kind, ctx, self.settings)
        limit = self.settings.max_stream_buffer
        isn_c, isn_s = conn.syn_client, conn.syn_server
        if conn.r_client is None:
            conn.r_client = Reassembler(limit, None if isn_c is None else (isn_c + 1) & 0xFFFFFFFF)
        if conn.r_server is None:
            conn.r_server = Reassembler(limit, None if isn_s is None else (isn_s + 1) & 0xFFFFFFFF)
        conn.state = 1
        return fwd

    def swap(self, conn: Conn) -> None:
        """Turn a connection around (its content shows the server is the other side)."""
        conn.swap()
        self.conns[conn.keys[0]] = (conn, True)
        self.conns[conn.keys[1]] = (conn, False)

    def gap_warning(self, conn: Conn, fwd: bool, reassembler: Reassembler, offset: int) -> None:
        """Report, once per stream direction, the bytes of a parsed stream never captured."""
        c, s = self.flows.name(conn.c_addr), self.flows.name(conn.s_addr)
        direction = f"{c}:{conn.c_port} -> {s}:{conn.s_port}"
        if not fwd:
            direction = f"{s}:{conn.s_port} -> {c}:{conn.c_port}"
        self.out.append(
            ReadWarning(
                f"{self.where}@{offset if offset >= 0 else self.offset}",
                f"TCP stream {direction}: {reassembler.gap_bytes} bytes were not captured "
                f"({reassembler.gaps} gap(s), the first after this offset); "
                "parsing resumed after each",
                traffic=True,  # packets the sensor missed: the file itself is sound
            )
        )

    def finish(self, conn: Conn, ts: float) -> None:
        """Stop parsing a connection: deliver what is held, then let the parser conclude."""
        parser = conn.parser
        if parser is not None:
            for fwd, reassembler in ((True, conn.r_client), (False, conn.r_server)):
                if reassembler is None or parser.done:
                    continue
                for chunk in reassembler.flush():
                    if isinstance(chunk, bytes):
                        self.collect(parser.feed(fwd, chunk, ts), ts)
                    else:
                        self.collect(parser.gap(fwd, chunk, ts), ts)
            self.collect(parser.finish(ts), ts)
        for fwd, reassembler in ((True, conn.r_client), (False, conn.r_server)):
            if reassembler is not None and reassembler.gaps:
                self.gap_warning(conn, fwd, reassembler, conn.gap_offset)
        conn.parser = conn.r_client = conn.r_server = None
        conn.state = 2
