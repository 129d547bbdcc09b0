"""What every reassembled-stream parser shares: settings, endpoints, detection, lines."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Protocol

from rolecall.probes.records import Item, ReadWarning

SMTP_FIRST_VERBS = (b"EHLO ", b"HELO ", b"LHLO ", b"MAIL FROM:", b"EHLO\r", b"HELO\r")
HTTP_METHODS = (
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
)


@dataclass(frozen=True, slots=True)
class PcapSettings:
    """How the capture reader behaves; every limit keeps memory bounded."""

    idle_timeout: float = 300.0  # seconds of capture time before a silent flow is closed
    closed_linger: float = 5.0  # seconds a closed TCP connection still absorbs late packets
    max_stream_buffer: int = 1 << 20  # out-of-order bytes held per direction before a gap
    max_line: int = 4096  # longest protocol line kept; longer lines are cut and counted
    max_connections: int = 500_000  # tracked connections before the oldest are closed
    max_flow_keys: int = 500_000  # flow aggregates held before they are emitted early
    max_packet: int = 262_144  # largest packet record accepted; beyond it the file is damaged
    capture_socks_password: bool = False  # SOCKS5 and HTTP CONNECT (Basic) passwords alike
    egress_window: float = 30.0  # seconds within which a proxy's outgoing connection is linked
    worker_min_bytes: int | None = 32 << 20  # a capture this large is read in a second process


@dataclass(frozen=True, slots=True)
class StreamContext:
    """The endpoints of one analysed stream, as records name them."""

    client: str
    client_port: int
    server: str
    server_port: int
    where: str  # file name, for warnings
    via_proxy: str = ""
    offset: int = -1  # file offset of the packet the stream was recognised in, for warnings


class StreamParser(Protocol):
    """A parser of one reassembled TCP stream (both directions)."""

    done: bool

    def feed(self, from_client: bool, data: bytes, ts: float) -> list[Item]:
        """Consume in-order bytes of one direction; return records completed by them."""
        ...

    def gap(self, from_client: bool, size: int, ts: float) -> list[Item]:
        """Note that ``size`` bytes of one direction were never captured."""
        ...

    def finish(self, ts: float) -> list[Item]:
        """End of the connection: return whatever is still pending."""
        ...


ParserFactory = Callable[[str, StreamContext, PcapSettings], StreamParser | None]


def detect(from_client: bool, data: bytes) -> str:
    """Name the protocol a stream's first payload in one direction shows, or ""."""
    if from_client:
        if _socks5_greeting(data):
            return "socks"
        if len(data) >= 9 and data[0] == 4 and data[1] in (1, 2) and 0 in data[8:]:
            return "socks"
        if len(data) >= 6 and data[0] == 0x16 and data[1] == 3 and data[5] == 1:
            return "tls"
        head = data[:12].upper()
        if head.startswith(SMTP_FIRST_VERBS):
            return "smtp"
        if data.startswith(b"CONNECT "):
            return "http-connect"
        if data.startswith(HTTP_METHODS):
            return "http"
        return ""
    if data[:3] == b"220" and (len(data) == 3 or data[3:4] in (b" ", b"-", b"\r")):
        return "smtp"
    return ""


def _socks5_greeting(data: bytes) -> bool:
    """Say whether ``data`` starts like a SOCKS5 greeting (version 5, a few known methods)."""
    if len(data) < 3 or data[0] != 5 or not 1 <= data[1] <= 16 or len(data) < 2 + data[1]:
        return False
    return all(m <= 9 or m >= 0x80 for m in data[2 : 2 + data[1]])


def utc(ts: float) -> datetime:
    """Return a capture timestamp as an aware UTC datetime."""
    return datetime.fromtimestamp(ts, UTC)


def text(raw: bytes) -> str:
    """Decode hostile bytes as text, keeping undecodable bytes visible as \\xNN."""
    return raw.decode("utf-8", errors="backslashreplace")


def detail(**fields: object) -> str:
    """Render raw evidence as the JSON text an Observation's detail holds."""
    return _detail_encoder().encode(fields)


@cache
def _detail_encoder() -> json.JSONEncoder:
    """What ``json.dumps(fields, sort_keys=True, default=str)`` uses, made once, not per call."""
    return json.JSONEncoder(sort_keys=True, default=str)


class LineSplitter:
    """Split a byte stream into lines, cutting (and counting) any longer than a limit."""

    __slots__ = ("buf", "discarding", "max_line", "overlong")

    def __init__(self, max_line: int) -> None:
        """Start with nothing buffered."""
        self.buf = b""
        self.max_line = max_line
        self.overlong = 0
        self.discarding = False

    def feed(self, data: bytes) -> list[bytes]:
        """Return the complete lines ``data`` finishes, without their CR/LF."""
        if not self.buf and data.endswith(b"\n") and len(data) <= self.max_line:
            parts = data.split(b"\n")
            parts.pop()
            return [p[:-1] if p.endswith(b"\r") else p for p in parts]
        if self.discarding:
            nl = data.find(b"\n")
            if nl < 0:
                return []
            data, self.discarding = data[nl + 1 :], False
        parts = (self.buf + data).split(b"\n")
        self.buf = parts.pop()
        lines = []
        for part in parts:
            if len(part) > self.max_line:
                self.overlong += 1
            line = part[: self.max_line]
            lines.append(line[:-1] if line.endswith(b"\r") else line)
        if len(self.buf) > self.max_line:
            self.overlong += 1
            lines.append(self.buf[: self.max_line])
            self.buf, self.discarding = b"", True
        return lines

    def reset(self) -> None:
        """Forget a partial line (after a gap in the stream)."""
        self.buf, self.discarding = b"", False


def stream_where(ctx: StreamContext) -> str:
    """Name a stream in a warning: the file, then client and server endpoints."""
    return f"{ctx.where}:{ctx.client}:{ctx.client_port}->{ctx.server}:{ctx.server_port}"


def overlong_warning(ctx: StreamContext, count: int, limit: int) -> list[Item]:
    """Return a warning if a stream had lines cut at the limit (the traffic's, not damage)."""
    if not count:
        return []
    # A 70 KB Subject is what a hostile peer sent, faithfully recorded: the file is sound.
    message = f"{count} line(s) longer than {limit} bytes were cut"
    return [ReadWarning(stream_where(ctx), message, traffic=True)]
