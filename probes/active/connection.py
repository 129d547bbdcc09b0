"""One bounded TCP (or TLS) conversation with a target, shared by every active probe.

Each read has a total deadline (``read_timeout``), not a per-byte one, so a
tarpit that drips a byte a second cannot hold a probe; every buffer is capped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import ssl
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from cryptography import x509
from cryptography.x509.oid import NameOID

from rolecall.probes.active.settings import ProbeSettings
from rolecall.probes.errors import ProbeError
from rolecall.probes.records import HostName, Observation, Record, Service

_CLOSE_WAIT: Final = 0.5

MAX_REPLY_LINES: Final = 512
"""Lines one SMTP/FTP reply may have; a longer "reply" is a flood and is not parsed on."""

_REPLY_CODE: Final = re.compile(rb"[1-5][0-5][0-9]")
_FINAL_LINE: Final = re.compile(r"[1-5][0-5][0-9](?: |$)")
_EVIDENCE_LINES: Final = 5
_SHOWN_CHARS: Final = 40
_DNS_LABEL: Final = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DNS_NAME: Final = re.compile(rf"(?=.{{1,253}}$)(?:{_DNS_LABEL}\.)+{_DNS_LABEL}")
MAX_CERTIFICATE_NAMES: Final = 20
"""Names kept from one certificate; a certificate listing thousands is not read on."""


class ReplyError(ProbeError):
    """A reply that cannot be matched to its command: malformed, over a bound, or unasked for."""

    def __init__(self, reason: str, lines: Sequence[str] = ()) -> None:
        """Say why (``reason``) and keep the head of the lines read so far as evidence."""
        super().__init__(reason)
        self.reason = reason
        self.lines = [line[: _SHOWN_CHARS * 4] for line in lines[:_EVIDENCE_LINES]]


NETWORK_ERRORS: Final = (OSError, TimeoutError, EOFError, asyncio.IncompleteReadError, ReplyError)
"""What a conversation with a hostile or broken peer may raise; probes turn these into evidence."""


@dataclass(frozen=True, slots=True)
class ReplyLimits:
    """How large one SMTP/FTP reply may be before the conversation is given up."""

    max_lines: int = MAX_REPLY_LINES
    max_bytes: int = 65536
    max_line_bytes: int = 2048


def parse_reply(
    data: bytes, limits: ReplyLimits, *, strict: bool = True
) -> tuple[list[str], int] | None:
    """Return the lines of the first whole reply in ``data`` and the bytes it used, or None.

    None means the reply is not all there yet. A reply ends at the line "NNN" or
    "NNN text" with the first line's code. ``strict`` (SMTP, RFC 5321) wants every
    line to carry that code; otherwise (FTP, RFC 959) the middle lines are free text.
    Raises ReplyError, and nothing else, for a malformed code, mixed codes (strict)
    or a reply over a bound of ``limits``.
    """
    lines: list[str] = []
    code = b""
    start = 0
    while True:
        end = data.find(b"\n", start, start + limits.max_line_bytes + 1)
        if end < 0:
            if len(data) - start > limits.max_line_bytes:
                raise ReplyError(f"reply line longer than {limits.max_line_bytes} bytes", lines)
            return None
        raw = data[start:end].rstrip(b"\r")
        start = end + 1
        if start > limits.max_bytes:
            raise ReplyError(f"reply longer than {limits.max_bytes} bytes", lines)
        head, mark = raw[:3], raw[3:4]
        well_formed = bool(_REPLY_CODE.fullmatch(head)) and mark in (b"", b" ", b"-")
        if not code:
            if not well_formed:
                raise ReplyError(f"malformed reply code: {_shown(raw)}", lines)
            code = head
        elif strict and not (well_formed and head == code):
            raise ReplyError(
                f"line {len(lines) + 1} does not carry the reply's code "
                f"{code.decode()}: {_shown(raw)}",
                lines,
            )
        lines.append(raw.decode("utf-8", errors="replace"))
        if head == code and mark in (b"", b" "):
            return lines, start
        if len(lines) >= limits.max_lines:
            raise ReplyError(f"reply longer than {limits.max_lines} lines", lines)


def _shown(raw: bytes) -> str:
    """Return the head of a hostile line as safe text for a reason."""
    return repr(show_bytes(raw[:_SHOWN_CHARS]))


def tls_context() -> ssl.SSLContext:
    """Return a client TLS context that records any certificate and verifies none."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    # Some OpenSSL builds refuse security level 0; their default list still works then.
    with contextlib.suppress(ssl.SSLError):
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


def certificate_summary(der: bytes | None) -> dict[str, str]:
    """Return subject, issuer, validity and fingerprint of a DER certificate (empty if none)."""
    if not der:
        return {}
    digest = hashlib.sha256(der).hexdigest()
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return {"sha256": digest, "error": "certificate could not be parsed"}
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "not_before": cert.not_valid_before_utc.astimezone(UTC).isoformat(),
        "not_after": cert.not_valid_after_utc.astimezone(UTC).isoformat(),
        "serial": format(cert.serial_number, "x"),
        "sha256": digest,
        "self_signed": str(cert.subject == cert.issuer).lower(),
    }


def certificate_names(der: bytes | None) -> list[str]:
    """Return the host names a DER certificate is for (CN and DNS SANs), checked and lower case.

    Only well-formed DNS names with a dot and a letter are kept: wildcards, addresses and
    anything a hostile certificate might hold instead are dropped, and at most
    MAX_CERTIFICATE_NAMES are read.
    """
    if not der:
        return []
    try:
        cert = x509.load_der_x509_certificate(der)
        candidates = [
            str(attribute.value)
            for attribute in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        ]
        with contextlib.suppress(x509.ExtensionNotFound):
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            candidates += names.get_values_for_type(x509.DNSName)
    except ValueError:
        return []
    found: list[str] = []
    for candidate in candidates[: MAX_CERTIFICATE_NAMES * 4]:
        name = dns_name(candidate)
        if name and name not in found:
            found.append(name)
    return found[:MAX_CERTIFICATE_NAMES]


def dns_name(text: str) -> str:
    """Return ``text`` as a lower-case DNS host name (with a dot and a letter), else ""."""
    name = text[:256].strip().rstrip(".").lower()
    if _DNS_NAME.fullmatch(name) and re.search(r"[a-z]", name):
        return name
    return ""


def certificate_hostnames(address: str, names: Sequence[str]) -> list[HostName]:
    """Return HostName records (source "probe", seen now) for the names of a peer's certificate."""
    seen = datetime.now(UTC)
    return [HostName(address=address, name=name, source="probe", seen=seen) for name in names]


def show_bytes(data: bytes) -> str:
    """Return bytes as text a person can read: printable ASCII kept, the rest escaped."""
    return data.decode("ascii", errors="backslashreplace").translate(_CONTROL_ESCAPES)


_CONTROL_ESCAPES: Final = {c: f"\\x{c:02x}" for c in range(32) if c not in (9, 10, 13)} | {
    127: "\\x7f"
}


def evidence(**fields: object) -> str:
    """Return probe evidence as compact, key-sorted JSON text (the ``detail`` of an Observation)."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)


class ConnectPacer:
    """Spaces new connections so a run opens at most ``per_second`` of them each second."""

    def __init__(self, per_second: float) -> None:
        """Pace at ``per_second`` connections per second."""
        self._interval = 1.0 / per_second
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        """Return when the next connection may be opened."""
        async with self._lock:
            now = asyncio.get_running_loop().time()
            delay = self._next - now
            self._next = max(now, self._next) + self._interval
            if delay > 0:
                await asyncio.sleep(delay)


CONNECT_PACER: ContextVar[ConnectPacer | None] = ContextVar("rolecall_connect_pacer", default=None)
"""The pacer of the current probe run; set by the driver for the tasks it starts."""


class ProbeConnection:
    """A TCP or TLS stream to one target whose every read is bounded in time and size."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, settings: ProbeSettings
    ) -> None:
        """Wrap an open stream; use ``ProbeConnection.open`` to make one."""
        self._reader = reader
        self._writer = writer
        self._settings = settings
        self._buffer = bytearray()
        self.seen = bytearray()
        """Everything received so far (up to max_reply_bytes): the raw evidence."""
        self.cut = 0
        """Bytes received but not kept because a cap was reached."""
        self.peer_certificate: bytes | None = None

    @classmethod
    async def open(
        cls, address: str, port: int, settings: ProbeSettings, *, tls: bool = False
    ) -> ProbeConnection:
        """Connect (and, with ``tls``, handshake) within ``connect_timeout``."""
        context = tls_context() if tls else None
        pacer = CONNECT_PACER.get()
        if pacer is not None:
            await pacer.wait()
        async with asyncio.timeout(settings.connect_timeout):
            reader, writer = await asyncio.open_connection(
                address, port, ssl=context, limit=settings.max_reply_bytes
            )
        conn = cls(reader, writer, settings)
        if tls:
            conn._record_certificate()
        return conn

    def _record_certificate(self) -> None:
        """Keep the peer's certificate (DER) of a TLS stream."""
        ssl_object = self._writer.get_extra_info("ssl_object")
        if isinstance(ssl_object, ssl.SSLObject):
            self.peer_certificate = ssl_object.getpeercert(binary_form=True)

    async def start_tls(self) -> None:
        """Upgrade this stream to TLS (after STARTTLS) within ``connect_timeout``."""
        self._buffer.clear()
        async with asyncio.timeout(self._settings.connect_timeout):
            await self._writer.start_tls(tls_context())
        self._record_certificate()

    async def send(self, data: bytes) -> None:
        """Send bytes and wait until they are handed to the kernel."""
        self._writer.write(data)
        async with asyncio.timeout(self._settings.read_timeout):
            await self._writer.drain()

    async def _fill(self) -> bool:
        """Read one chunk into the buffer; return False at end of stream."""
        chunk = await self._reader.read(4096)
        if not chunk:
            return False
        room = max(self._settings.max_reply_bytes - len(self.seen), 0)
        self.seen += chunk[:room]
        self.cut += len(chunk) - min(room, len(chunk))
        self._buffer += chunk
        return True

    async def wait_for_data(self, timeout: float) -> bytes:
        """Return buffered bytes, unconsumed, once any arrive; b"" if the peer closed first."""
        async with asyncio.timeout(timeout):
            if not self._buffer:
                await self._fill()
        return bytes(self._buffer)

    async def wait_for_line(self, timeout: float) -> bytes:
        """Return buffered bytes, unconsumed, once a whole line (or the cap, or EOF) is there."""
        try:
            async with asyncio.timeout(timeout):
                while (
                    b"\n" not in self._buffer and len(self._buffer) < self._settings.max_line_bytes
                ):
                    if not await self._fill():
                        break
        except TimeoutError:
            if not self._buffer:
                raise
        return bytes(self._buffer)

    async def read_exact(self, count: int) -> bytes:
        """Return exactly ``count`` bytes, or raise EOFError/TimeoutError within read_timeout."""
        async with asyncio.timeout(self._settings.read_timeout):
            while len(self._buffer) < count:
                if not await self._fill():
                    raise EOFError(f"stream closed after {len(self._buffer)} of {count} bytes")
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    async def read_line(self) -> bytes:
        """Return one line without its end (cut at max_line_bytes); b"" at end of stream."""
        limit = self._settings.max_line_bytes
        async with asyncio.timeout(self._settings.read_timeout):
            while b"\n" not in self._buffer:
                if len(self._buffer) > limit:
                    # Keep the head of an endless line and drop the rest as it comes.
                    self.cut += len(self._buffer) - limit
                    del self._buffer[limit:]
                if not await self._fill():
                    line = bytes(self._buffer)
                    self._buffer.clear()
                    return line
        end = self._buffer.index(b"\n")
        line = bytes(self._buffer[: min(end, limit)])
        del self._buffer[: end + 1]
        return line.rstrip(b"\r")

    async def read_reply(self, *, strict: bool = False) -> list[str]:
        """Return one whole SMTP/FTP reply, every line of it up to its final "NNN " line.

        The reply must come within ``read_timeout`` and within ``ReplyLimits``
        (MAX_REPLY_LINES, max_reply_bytes, max_line_bytes); a reply over a bound or
        malformed (see ``parse_reply``; ``strict`` for SMTP) raises ReplyError.
        """
        settings = self._settings
        limits = ReplyLimits(MAX_REPLY_LINES, settings.max_reply_bytes, settings.max_line_bytes)
        async with asyncio.timeout(settings.read_timeout):
            while True:
                parsed = parse_reply(bytes(self._buffer), limits, strict=strict)
                if parsed is not None:
                    lines, used = parsed
                    del self._buffer[:used]
                    return lines
                if not await self._fill():
                    where = "inside" if self._buffer else "before"
                    raise EOFError(f"stream closed {where} a reply")

    async def unasked(self) -> bytes:
        """Return the bytes already received that no reply read has taken, without waiting.

        Bytes here before a request is sent (or left after a whole reply) answer
        nothing the probe asked: the peer is out of step with the conversation.
        """
        if not self._buffer:
            # A zero timeout takes what the stream already holds and never waits for more.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0):
                    await self._fill()
        return bytes(self._buffer)

    async def close(self) -> None:
        """Close the stream politely, but abort it if the peer keeps it open past a moment."""
        self._writer.close()
        try:
            # A TLS close waits for the peer's close_notify, which a busy peer may never send.
            async with asyncio.timeout(min(self._settings.read_timeout, _CLOSE_WAIT)):
                await self._writer.wait_closed()
        except NETWORK_ERRORS:
            self._writer.transport.abort()


def reply_code(lines: list[str]) -> int:
    """Return the code of a reply whose last line is a final "NNN" line, else 0."""
    if not lines or not _FINAL_LINE.match(lines[-1]):
        return 0
    return int(lines[-1][:3])


@dataclass(slots=True)
class ProbeResult:
    """What one probe learnt about one port: records if it spoke the protocol, else bytes seen."""

    records: list[Record] = field(default_factory=list)
    seen: bytes = b""
    """Bytes a peer sent that this probe did not recognise (evidence for "unclassified")."""
    fallback: bool = False
    """The records only say the port speaks TLS: any other probe's match wins over them."""

    @property
    def matched(self) -> bool:
        """Return whether the port spoke this probe's protocol."""
        return bool(self.records)


def observation(address: str, port: int, kind: str, value: str, detail: str) -> Observation:
    """Return an Observation from the active probes (source "probe", transport tcp, seen now)."""
    return Observation(
        address=address,
        kind=kind,
        source="probe",
        seen=datetime.now(UTC),
        port=port,
        transport="tcp",
        value=value,
        detail=detail,
    )


def service(
    address: str,
    port: int,
    protocol: str,
    *,
    product: str = "",
    version: str = "",
    auth: str = "",
    banner: str = "",
) -> Service:
    """Return a Service record from the active probes (banner cut to 512 characters)."""
    return Service(
        address=address,
        port=port,
        transport="tcp",
        source="probe",
        seen=datetime.now(UTC),
        protocol=protocol,
        product=product,
        version=version,
        auth=auth,
        banner=banner[:512],
    )
