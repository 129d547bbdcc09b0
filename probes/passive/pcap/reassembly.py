"""In-order delivery of one direction of a TCP connection from captured segments.

Retransmissions and overlaps are trimmed, out-of-order segments are held (up to
a byte limit) until the hole before them fills. A hole that never fills is not
invented: it is delivered as a gap (an ``int``, the number of missing bytes)
so the parser above can resynchronise, and it is counted.
"""

from __future__ import annotations

from typing import Final

SEQ_MOD: Final = 1 << 32
HALF: Final = 1 << 31
MAX_PENDING_SEGMENTS: Final = 4096

Chunk = bytes | int
"""Delivered data (bytes) or a gap of that many missing bytes (int)."""


def seq_diff(a: int, b: int) -> int:
    """Return a - b in 32-bit sequence space, as a signed distance."""
    d = (a - b) % SEQ_MOD
    return d - SEQ_MOD if d >= HALF else d


class Reassembler:
    """One direction of one TCP connection."""

    __slots__ = ("gap_bytes", "gaps", "max_pending", "next_seq", "pending", "pending_bytes")

    def __init__(self, max_pending: int, next_seq: int | None = None) -> None:
        """Start expecting ``next_seq`` (the ISN + 1 when the SYN was seen, else unknown)."""
        self.max_pending = max_pending
        self.next_seq = next_seq
        self.pending: dict[int, bytes] = {}
        self.pending_bytes = 0
        self.gaps = 0
        self.gap_bytes = 0

    def segment(self, seq: int, data: bytes) -> list[Chunk]:
        """Take one segment's payload; return what can now be delivered in order."""
        if self.next_seq is None:
            self.next_seq = seq
        out: list[Chunk] = []
        diff = seq_diff(seq, self.next_seq)
        if diff <= 0:
            if -diff >= len(data):
                return out  # a retransmission of what was delivered already
            data = data[-diff:] if diff else data
            out.append(data)
            self.next_seq = (self.next_seq + len(data)) % SEQ_MOD
            if self.pending:
                self._drain(out)
            return out
        if (
            self.pending_bytes + len(data) > self.max_pending
            or len(self.pending) >= MAX_PENDING_SEGMENTS
        ):
            if not self.pending:
                self._jump(out, seq)
                return out + self.segment(seq, data)
            self._skip_hole(out)
            return out + self.segment(seq, data)
        held = self.pending.get(seq)
        if held is None or len(held) < len(data):
            self.pending_bytes += len(data) - (len(held) if held else 0)
            self.pending[seq] = data
        return out

    def skip_to(self, seq: int) -> list[Chunk]:
        """Declare the bytes up to ``seq`` missing (a segment cut by the snap length)."""
        out: list[Chunk] = []
        if self.next_seq is not None and seq_diff(seq, self.next_seq) > 0:
            self._jump(out, seq)
            self._drain(out)
        return out

    def acked(self, ack: int) -> list[Chunk]:
        """The peer acknowledged up to ``ack``: holes before it will never be filled."""
        out: list[Chunk] = []
        while self.pending and self.next_seq is not None and seq_diff(ack, self.next_seq) > 0:
            nearest = min(self.pending, key=lambda s: seq_diff(s, self.next_seq or 0))
            if seq_diff(nearest, ack) >= 0:
                break
            self._skip_hole(out)
        return out

    def flush(self) -> list[Chunk]:
        """End of stream: deliver everything held, with the holes before it as gaps."""
        out: list[Chunk] = []
        while self.pending:
            self._skip_hole(out)
        return out

    def _drain(self, out: list[Chunk]) -> None:
        """Deliver held segments that have become contiguous."""
        if self.next_seq is None:
            return
        progress = True
        while progress and self.pending:
            progress = False
            for seq in list(self.pending):
                diff = seq_diff(seq, self.next_seq)
                if diff > 0:
                    continue
                data = self.pending.pop(seq)
                self.pending_bytes -= len(data)
                if -diff < len(data):
                    data = data[-diff:] if diff else data
                    out.append(data)
                    self.next_seq = (self.next_seq + len(data)) % SEQ_MOD
                    progress = True

    def _jump(self, out: list[Chunk], seq: int) -> None:
        """Declare everything before ``seq`` missing."""
        hole = seq_diff(seq, self.next_seq or 0)
        out.append(hole)
        self.gaps += 1
        self.gap_bytes += hole
        self.next_seq = seq

    def _skip_hole(self, out: list[Chunk]) -> None:
        """Give up on the hole before the nearest held segment and deliver from there."""
        nearest = min(self.pending, key=lambda s: seq_diff(s, self.next_seq or 0))
        if seq_diff(nearest, self.next_seq or 0) > 0:
            self._jump(out, nearest)
        self._drain(out)
