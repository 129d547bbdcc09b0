"""Capture files: pcap and pcapng (optionally gzip-compressed) and their link layers.

The reader is built for speed: record headers are parsed with ``struct`` from a
large read buffer and each packet is handed on as raw bytes; nothing above the
link layer is decoded here. Damage inside a readable file becomes a
``ReadWarning`` in ``PacketSource.warnings`` (reading stops where the file can
no longer be followed); a file that cannot be read at all raises ``InputError``.

Every length the file states is checked before anything is allocated for it: a
packet longer than ``max_packet`` is skipped with a warning (reading stops if
its length is beyond any capture's, as the next record cannot be found), a
pcapng block longer than ``_MAX_BLOCK`` stops the reading. A gzip stream cut or
damaged part-way keeps every packet decompressed before the damage. Packets of
a link type not read here are counted and named in one warning.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Final

from rolecall.probes.errors import InputError
from rolecall.probes.passive.pcap.link_types import describe_link_type
from rolecall.probes.records import ReadWarning

CHUNK: Final = 1 << 20

# Link types (https://www.tcpdump.org/linktypes.html).
LINKTYPE_NULL: Final = 0
LINKTYPE_ETHERNET: Final = 1
LINKTYPE_RAW: Final = 101
LINKTYPE_RAW_OPENBSD: Final = 12
LINKTYPE_RAW_BSDOS: Final = 14
LINKTYPE_LOOP: Final = 108
LINKTYPE_LINUX_SLL: Final = 113
LINKTYPE_IPV4: Final = 228
LINKTYPE_IPV6: Final = 229
LINKTYPE_LINUX_SLL2: Final = 276

READABLE_LINKTYPES: Final = frozenset(
    {
        LINKTYPE_NULL,
        LINKTYPE_ETHERNET,
        LINKTYPE_RAW,
        LINKTYPE_RAW_OPENBSD,
        LINKTYPE_RAW_BSDOS,
        LINKTYPE_LOOP,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
        LINKTYPE_LINUX_SLL2,
    }
)
"""The link types ``ip_offset`` finds IP in."""

ETH_IPV4: Final = 0x0800
ETH_IPV6: Final = 0x86DD
ETH_VLANS: Final = frozenset({0x8100, 0x88A8, 0x9100})

_PCAP_MAGICS: Final = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
_PCAPNG_SHB: Final = b"\x0a\x0d\x0d\x0a"
_MAX_BLOCK: Final = 16 << 20
"""The longest pcapng block, and the longest over-long packet record skipped (not stopped at)."""

Packet = tuple[float, int, bytes, int]
"""(timestamp in epoch seconds, link type, frame bytes, file offset of the record)."""


def ip_offset(linktype: int, frame: bytes) -> int:
    """Return where the IP header starts in ``frame``, or -1 if it carries no IPv4/IPv6."""
    if linktype == LINKTYPE_ETHERNET:
        off, etype = 14, (frame[12] << 8 | frame[13]) if len(frame) >= 14 else 0
        while etype in ETH_VLANS and len(frame) >= off + 4:
            etype = frame[off + 2] << 8 | frame[off + 3]
            off += 4
    elif linktype == LINKTYPE_LINUX_SLL:
        off, etype = 16, (frame[14] << 8 | frame[15]) if len(frame) >= 16 else 0
    elif linktype == LINKTYPE_LINUX_SLL2:
        off, etype = 20, (frame[0] << 8 | frame[1]) if len(frame) >= 20 else 0
    elif linktype in (
        LINKTYPE_RAW,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
        LINKTYPE_RAW_OPENBSD,
        LINKTYPE_RAW_BSDOS,
    ):
        return 0 if frame and frame[0] >> 4 in (4, 6) else -1
    elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        return 4 if len(frame) > 4 and frame[4] >> 4 in (4, 6) else -1
    else:
        return -1
    if etype in (ETH_IPV4, ETH_IPV6) and len(frame) > off:
        return off
    return -1


class PacketSource:
    """Packets of one capture file, read lazily; damage is collected in ``warnings``."""

    def __init__(self, path: Path, max_packet: int = 262144) -> None:
        """Remember the file; nothing is read until ``packets()`` is iterated."""
        self.path = path
        self.max_packet = max_packet
        self.warnings: list[ReadWarning] = []
        self._ended = False  # the stream broke off and that was said: it reads as its end
        self._unread_links: dict[int, list[int]] = {}  # link type: [first offset, packets]

    def _warn(self, offset: int, message: str) -> None:
        """Record damage at ``offset`` of the (decompressed) file."""
        self.warnings.append(ReadWarning(f"{self.path}@{offset}", message))

    def batches(self) -> Iterator[list[Packet]]:
        """Yield every readable packet, in lists; raise InputError if the file is not a capture."""
        raw, stream = self._open()
        try:
            head = self._read(stream, 4, 0)
            if len(head) < 4:
                raise InputError(f"{self.path} is too short to be a capture (byte offset 0).")
            if head in _PCAP_MAGICS:
                yield from self._classic(stream, head)
            elif head == _PCAPNG_SHB:
                yield from self._pcapng(stream, head)
            else:
                raise InputError(
                    f"{self.path} is not a pcap or pcapng capture "
                    f"(unknown magic {head.hex()} at byte offset 0)."
                )
            for linktype, (offset, count) in self._unread_links.items():
                self._warn(
                    offset,
                    f"{describe_link_type(linktype)} is not a link layer rolecall reads: "
                    f"{count} packet(s) skipped",
                )
        finally:
            stream.close()
            raw.close()

    def _open(self) -> tuple[BinaryIO, BinaryIO]:
        """Open the file and the stream to read it by, transparently decompressing gzip."""
        try:
            raw = self.path.open("rb")
            # Peeked, not read and sought back: the file need not be seekable.
            gzipped = raw.peek(2)[:2] == b"\x1f\x8b"
        except OSError as exc:
            raise InputError(f"cannot open {self.path}: {exc.strerror or exc}.") from None
        if gzipped:
            return raw, gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
        return raw, raw

    def _read(self, stream: BinaryIO, size: int, offset: int) -> bytes:
        """Read up to ``size`` bytes; a cut or corrupt gzip stream ends where it breaks off.

        What was decompressed before the break is returned (a plain ``read`` of a gzip
        stream would drop the part of its request already decompressed), and the break
        is said in one warning; later reads return nothing.
        """
        if self._ended:
            return b""
        if not isinstance(stream, gzip.GzipFile):
            try:
                return stream.read(size)
            except OSError as exc:
                return self._broken(offset, b"", exc)
        parts: list[bytes] = []
        have = 0
        try:
            while have < size and (part := stream.read1(size - have)):
                parts.append(part)
                have += len(part)
        except (OSError, EOFError, zlib.error) as exc:
            return self._broken(offset, b"".join(parts), exc)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _broken(self, offset: int, data: bytes, exc: Exception) -> bytes:
        """The stream broke off after ``data``: say so once (InputError if nothing came)."""
        if offset == 0 and not data:
            how = (
                "decompressed"
                if isinstance(exc, (EOFError, zlib.error, gzip.BadGzipFile))
                else "read"
            )
            raise InputError(f"{self.path} cannot be {how}: {exc} (byte offset 0).") from None
        self._ended = True
        if isinstance(exc, EOFError):
            try:
                cut = f"file truncated at compressed byte {self.path.stat().st_size}"
            except OSError:
                cut = "file truncated"
            message = f"the gzip data ends early ({cut}); what came before it is kept"
        else:
            message = f"the file cannot be read further ({exc}); what came before it is kept"
        self._warn(offset + len(data), message)
        return data

    def _ends_inside(self, offset: int, what: str, end: int) -> None:
        """Warn that the file ends inside ``what`` at ``offset``, unless a break was said."""
        if not self._ended:
            self._warn(offset, f"file ends inside {what} (truncated at byte {end})")

    def _oversized(self, offset: int, incl: int) -> bool:
        """Warn of a packet record longer than ``max_packet``; whether it can be skipped."""
        if incl > _MAX_BLOCK:
            self._warn(
                offset,
                f"packet claims {incl} bytes, more than any capture holds (limit "
                f"{self.max_packet}): the file cannot be followed past it, reading stopped",
            )
            return False
        self._long(offset, incl)
        return True

    def _long(self, offset: int, incl: int) -> None:
        """Warn of a packet longer than ``max_packet`` that is skipped."""
        self._warn(offset, f"packet claims {incl} bytes (limit {self.max_packet}); skipped")

    def _skip(self, stream: BinaryIO, count: int, offset: int, at: int, what: str) -> bool:
        """Read past ``count`` bytes from ``at``, a buffer at a time; False if the file ends."""
        while count > 0:
            more = self._read(stream, min(CHUNK, count), at)
            if not more:
                self._ends_inside(offset, what, at)
                return False
            count -= len(more)
            at += len(more)
        return True

    def _classic(self, stream: BinaryIO, magic: bytes) -> Iterator[list[Packet]]:
        """Yield the packets of a classic pcap file, a read buffer's worth at a time."""
        order, scale = _PCAP_MAGICS[magic]
        rest = self._read(stream, 20, 4)
        if len(rest) < 20:
            raise InputError(f"{self.path} ends inside the pcap file header (byte offset 4).")
        linktype = struct.unpack(order + "HHiIII", rest)[5] & 0x0FFFFFFF  # upper bits: FCS flags
        records = self._classic_records(stream, order, scale, linktype)
        if linktype in READABLE_LINKTYPES:
            yield from records
            return
        # Read through all the same: damage is found and the packets skipped are counted.
        self._unread_links[linktype] = [20, sum(len(batch) for batch in records)]

    def _classic_records(
        self, stream: BinaryIO, order: str, scale: float, linktype: int
    ) -> Iterator[list[Packet]]:
        """Yield the packet records after a classic pcap file's header, in lists."""
        # Not the header's snap length: that is the file's word too (up to 4 GiB).
        limit = self.max_packet
        unpack = struct.Struct(order + "IIII").unpack_from
        base = 24
        buf = self._read(stream, CHUNK, base)
        while buf:
            batch: list[Packet] = []
            pos, size = 0, len(buf)
            while pos + 16 <= size:
                sec, frac, incl, _orig = unpack(buf, pos)
                end = pos + 16 + incl
                if incl > limit:
                    if not self._oversized(base + pos, incl):
                        yield batch
                        return
                    if end > size:
                        what = f"a packet of {incl} bytes"
                        if not self._skip(stream, end - size, base + pos, base + size, what):
                            yield batch
                            return
                        base, pos = base + end - size, size
                        break
                    pos = end
                    continue
                if end > size:
                    break
                batch.append((sec + frac * scale, linktype, buf[pos + 16 : end], base + pos))
                pos = end
            if pos < size:
                # The record cut by the buffer's end is completed by reads of its own, so the
                # next buffer is used as read instead of being copied behind the leftover.
                got = self._straddling(stream, buf[pos:], base + pos, limit, unpack)
                if got is None:
                    yield batch
                    return
                record, length = got
                if record:
                    sec, frac = unpack(record, 0)[:2]
                    batch.append((sec + frac * scale, linktype, record[16:], base + pos))
                base += pos + length
            else:
                base += size
            yield batch
            buf = self._read(stream, CHUNK, base)

    def _straddling(
        self,
        stream: BinaryIO,
        head: bytes,
        offset: int,
        limit: int,
        unpack: Callable[[bytes, int], tuple[int, ...]],
    ) -> tuple[bytes, int] | None:
        """Complete the record starting with ``head``: (record, length on file).

        The record is empty if it was skipped as too long; None (and a warning) if
        the file ends inside it or cannot be followed past it.
        """
        if len(head) < 16:
            head += self._read(stream, 16 - len(head), offset + len(head))
            if len(head) < 16:
                self._ends_inside(offset, "a packet record header", offset + len(head))
                return None
        incl = unpack(head, 0)[2]
        what = f"a packet of {incl} bytes"
        if incl > limit:
            if not self._oversized(offset, incl):
                return None
            if not self._skip(stream, 16 + incl - len(head), offset, offset + len(head), what):
                return None
            return b"", 16 + incl
        parts, have = [head], len(head)
        while have < 16 + incl:
            # A buffer's worth at a time: the claimed length is the file's word, not its size.
            more = self._read(stream, min(CHUNK, 16 + incl - have), offset + have)
            if not more:
                self._ends_inside(offset, what, offset + have)
                return None
            parts.append(more)
            have += len(more)
        return b"".join(parts), have

    def _pcapng(self, stream: BinaryIO, shb_type: bytes) -> Iterator[list[Packet]]:
        """Yield the packets of a pcapng file in lists."""
        batch: list[Packet] = []
        for packet in self._pcapng_packets(stream, shb_type):
            batch.append(packet)
            if len(batch) >= 1024:
                yield batch
                batch = []
        yield batch

    def _pcapng_packets(self, stream: BinaryIO, shb_type: bytes) -> Iterator[Packet]:
        """Yield the packets of a pcapng file (EPB, SPB and obsolete packet blocks)."""
        buf = shb_type + self._read(stream, CHUNK, 4)
        pos, base = 0, 0
        order = "<"
        ifaces: list[tuple[int, float]] = []
        while True:
            if len(buf) - pos < 12:
                buf, base, pos = (
                    buf[pos:] + self._read(stream, CHUNK, base + len(buf)),
                    base + pos,
                    0,
                )
                if len(buf) < 12:
                    if buf:
                        self._ends_inside(base, "a pcapng block header", base + len(buf))
                    return
            btype_raw = buf[pos : pos + 4]
            if btype_raw == _PCAPNG_SHB:
                bom = buf[pos + 8 : pos + 12]
                if bom not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
                    self._raise_or_warn(base + pos, "section header has an unknown byte-order mark")
                    return
                order = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
                ifaces = []
            btype, blen = struct.unpack_from(order + "II", buf, pos)
            if blen < 12 or blen > _MAX_BLOCK or blen % 4:
                self._raise_or_warn(base + pos, f"pcapng block claims {blen} bytes")
                return
            if pos + blen > len(buf):
                more = self._read(stream, max(CHUNK, blen), base + len(buf))
                buf, base, pos = buf[pos:] + more, base + pos, 0
                if blen > len(buf):
                    what = f"a pcapng block of {blen} bytes"
                    self._ends_inside(base, what, base + len(buf))
                    return
            body = buf[pos + 8 : pos + blen - 4]
            packet = self._pcapng_block(btype, body, order, ifaces, base + pos)
            if packet is not None:
                yield packet
            pos += blen

    def _raise_or_warn(self, offset: int, message: str) -> None:
        """Fail on damage in the very first block; otherwise warn and let reading stop."""
        if offset == 0:
            raise InputError(
                f"{self.path} is not a readable pcapng file: {message} (byte offset 0)."
            )
        self._warn(offset, message + "; reading stopped")

    def _pcapng_block(
        self, btype: int, body: bytes, order: str, ifaces: list[tuple[int, float]], offset: int
    ) -> Packet | None:
        """Decode one pcapng block body, updating ``ifaces``; return a packet if it holds one."""
        try:
            if btype == 1:
                linktype = struct.unpack_from(order + "H", body, 0)[0]
                ifaces.append((linktype, _tsresol(body[8:], order)))
                return None
            if btype == 6:
                iface, hi, lo, caplen = struct.unpack_from(order + "IIII", body, 0)
                data = body[20 : 20 + caplen]
            elif btype == 2:
                iface, _, hi, lo, caplen = struct.unpack_from(order + "HHIII", body, 0)
                data = body[20 : 20 + caplen]
            elif btype == 3:
                iface, hi, lo = 0, 0, 0
                data = body[4:]
                caplen = len(data)
            else:
                return None
        except struct.error:
            self._warn(offset, f"pcapng block type {btype} is too short; skipped")
            return None
        if iface >= len(ifaces):
            self._warn(offset, f"packet names interface {iface} that was never described; skipped")
            return None
        if caplen > self.max_packet:
            self._long(offset, caplen)  # the block's own length frames it: reading goes on
            return None
        linktype, scale = ifaces[iface]
        if linktype not in READABLE_LINKTYPES:
            self._unread_links.setdefault(linktype, [offset, 0])[1] += 1
            return None
        return ((hi << 32 | lo) * scale, linktype, data, offset)


def _tsresol(options: bytes, order: str) -> float:
    """Return the seconds per timestamp unit from an interface block's options."""
    pos = 0
    while pos + 4 <= len(options):
        code, length = struct.unpack_from(order + "HH", options, pos)
        if code == 0:
            break
        if code == 9 and length >= 1 and pos + 4 < len(options):
            value = options[pos + 4]
            return 2.0 ** -(value & 0x7F) if value & 0x80 else 10.0**-value
        pos += 4 + (length + 3) // 4 * 4
    return 1e-6
