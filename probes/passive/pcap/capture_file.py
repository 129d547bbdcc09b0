"""Capture files: pcap and pcapng (optionally gzip-compressed) and their link layers.

The reader is built for speed: record headers are parsed with ``struct`` from a
large read buffer and each packet is handed on as raw bytes; nothing above the
link layer is decoded here. Damage inside a readable file becomes a
``ReadWarning`` in ``PacketSource.warnings`` (reading stops where the file can
no longer be followed); a file that cannot be read at all raises ``InputError``.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Final

from rolecall.probes.errors import InputError
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

    def _warn(self, offset: int, message: str) -> None:
        """Record damage at ``offset`` of the (decompressed) file."""
        self.warnings.append(ReadWarning(f"{self.path}@{offset}", message))

    def batches(self) -> Iterator[list[Packet]]:
        """Yield every readable packet, in lists; raise InputError if the file is not a capture."""
        stream = self._open()
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
        finally:
            stream.close()

    def _open(self) -> BinaryIO:
        """Open the file, transparently decompressing gzip."""
        try:
            raw = self.path.open("rb")
        except OSError as exc:
            raise InputError(f"cannot open {self.path}: {exc.strerror or exc}.") from None
        if raw.read(2) == b"\x1f\x8b":
            raw.seek(0)
            return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
        raw.seek(0)
        return raw

    def _read(self, stream: BinaryIO, size: int, offset: int) -> bytes:
        """Read up to ``size`` bytes; a corrupt gzip stream reads as the end of the file."""
        try:
            return stream.read(size)
        except (OSError, EOFError, zlib.error) as exc:
            if offset == 0:
                raise InputError(
                    f"{self.path} cannot be decompressed: {exc} (byte offset 0)."
                ) from None
            self._warn(offset, f"compressed data is damaged ({exc}); reading stopped")
            return b""

    def _classic(self, stream: BinaryIO, magic: bytes) -> Iterator[list[Packet]]:
        """Yield the packets of a classic pcap file, a read buffer's worth at a time."""
        order, scale = _PCAP_MAGICS[magic]
        rest = self._read(stream, 20, 4)
        if len(rest) < 20:
            raise InputError(f"{self.path} ends inside the pcap file header (byte offset 4).")
        _, _, _, _, snaplen, linktype = struct.unpack(order + "HHiIII", rest)
        linktype &= 0x0FFFFFFF  # upper bits carry FCS flags
        limit = max(self.max_packet, snaplen)
        unpack = struct.Struct(order + "IIII").unpack_from
        base = 24
        buf = self._read(stream, CHUNK, base)
        while buf:
            batch: list[Packet] = []
            pos, size = 0, len(buf)
            while pos + 16 <= size:
                sec, frac, incl, _orig = unpack(buf, pos)
                if incl > limit:
                    yield batch
                    self._warn(
                        base + pos, f"packet claims {incl} bytes (limit {limit}); reading stopped"
                    )
                    return
                end = pos + 16 + incl
                if end > size:
                    break
                batch.append((sec + frac * scale, linktype, buf[pos + 16 : end], base + pos))
                pos = end
            if pos < size:
                # The record cut by the buffer's end is completed by reads of its own, so the
                # next buffer is used as read instead of being copied behind the leftover.
                record = self._straddling(stream, buf[pos:], base + pos, limit, unpack)
                if record is None:
                    yield batch
                    return
                sec, frac = unpack(record, 0)[:2]
                batch.append((sec + frac * scale, linktype, record[16:], base + pos))
                base += pos + len(record)
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
    ) -> bytes | None:
        """Complete the record starting with ``head``; None (and a warning) if it cannot be."""
        if len(head) < 16:
            head += self._read(stream, 16 - len(head), offset + len(head))
            if len(head) < 16:
                self._warn(offset, "file ends inside a packet record header")
                return None
        incl = unpack(head, 0)[2]
        if incl > limit:
            self._warn(offset, f"packet claims {incl} bytes (limit {limit}); reading stopped")
            return None
        parts, have = [head], len(head)
        while have < 16 + incl:
            # A buffer's worth at a time: the claimed length is the file's word, not its size.
            more = self._read(stream, min(CHUNK, 16 + incl - have), offset + have)
            if not more:
                self._warn(offset, f"file ends inside a packet of {incl} bytes")
                return None
            parts.append(more)
            have += len(more)
        return b"".join(parts)

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
                        self._warn(base, "file ends inside a pcapng block header")
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
                    self._warn(base, f"file ends inside a pcapng block of {blen} bytes")
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
            else:
                return None
        except struct.error:
            self._warn(offset, f"pcapng block type {btype} is too short; skipped")
            return None
        if iface >= len(ifaces):
            self._warn(offset, f"packet names interface {iface} that was never described; skipped")
            return None
        linktype, scale = ifaces[iface]
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
