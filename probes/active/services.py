"""Probes for the other services: HTTP, HTTPS, DNS over TCP, SSH, FTP, POP3 and IMAP.

Servers that speak first (SSH, FTP, POP3, IMAP) are told apart by their
greeting; HTTP, HTTPS and DNS are asked one harmless question each.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import struct
from typing import Final

import dpkt

from rolecall.probes.active.connection import (
    NETWORK_ERRORS,
    ProbeConnection,
    ProbeResult,
    ReplyError,
    certificate_hostnames,
    certificate_names,
    certificate_summary,
    evidence,
    observation,
    reply_code,
    service,
    show_bytes,
)
from rolecall.probes.active.settings import ProbeSettings
from rolecall.probes.records import Record

_PRODUCTS: Final = (
    re.compile(r"SSH-[\d.]+-([A-Za-z][A-Za-z]*)[_-]([\w.+-]+)"),
    re.compile(r"\b(Postfix)\b()"),
    re.compile(r"\b(Exim) ([\d.]+)"),
    re.compile(r"\b(Sendmail) ([\w.+/-]+)"),
    re.compile(r"\b(Python SMTP) ([\d.]+)"),
    re.compile(r"\b(Microsoft ESMTP MAIL Service)(?:, Version: ([\d.]+))?"),
    re.compile(r"\b(pyftpdlib) ([\d.]+)"),
    re.compile(r"\b(vsFTPd) ([\d.]+)"),
    re.compile(r"\b(ProFTPD) ([\d.]+)"),
    re.compile(r"\b(Pure-FTPd)\b()"),
    re.compile(r"\b(Dovecot)\b()"),
    re.compile(r"\b(Cyrus)\b[^\d]*([\d.]+)?"),
    re.compile(r"^([A-Za-z][\w.-]*)/([\w.-]+)"),
)

_DNS_VERSION: Final = re.compile(r"([A-Za-z][A-Za-z.]*)[-/ ]v?(\d[\w.-]*)")

GREETINGS: Final = (
    (b"SSH-", "ssh"),
    (b"+OK", "pop3"),
    (b"* OK", "imap"),
    (b"* PREAUTH", "imap"),
)
"""Greetings of servers that speak first, mapped to their protocol (SMTP/FTP are told by 220)."""


def product_version(text: str) -> tuple[str, str]:
    """Return (product, version) named by a banner or Server header, or ("", "")."""
    for pattern in _PRODUCTS:
        match = pattern.search(text)
        if match:
            return match.group(1), match.group(2) or ""
    return "", ""


def greeting_protocol(first: bytes) -> str:
    """Return the protocol a server-first greeting announces ("ftp" for a 220 naming FTP)."""
    for prefix, protocol in GREETINGS:
        if first.startswith(prefix):
            return protocol
    if first[:3] == b"220" and b"FTP" in first.upper():
        return "ftp"
    return ""


def banner_records(address: str, port: int, protocol: str, banner: str) -> ProbeResult:
    """Return the protocol Observation and Service record of a greeting-identified service."""
    product, version = product_version(banner)
    return ProbeResult(
        records=[
            observation(address, port, "protocol", protocol, evidence(banner=banner)),
            service(address, port, protocol, product=product, version=version, banner=banner),
        ]
    )


async def probe_ftp_anonymous(
    conn: ProbeConnection, address: str, port: int, settings: ProbeSettings
) -> ProbeResult:
    """Try USER anonymous / PASS probe-address, then QUIT (nothing else); record the replies.

    A reply that cannot be matched to its command (bytes before the command or
    after its reply, a malformed or unbounded reply) gives "inconclusive", never "allowed".
    """
    steps: list[dict[str, object]] = []
    verdict = "refused"
    try:
        for command in ("USER anonymous", f"PASS {settings.ftp_password}"):
            reply = await _ftp_command(conn, command)
            steps.append({"command": command, "reply": reply})
            if reply_code(reply) == 230:
                verdict = "allowed"
                break
            if reply_code(reply) != 331:
                break
        steps.append({"command": "QUIT", "reply": await _ftp_command(conn, "QUIT")})
    except ReplyError as exc:
        verdict = "inconclusive"
        steps.append({"error": f"desynchronised reply: {exc.reason}", "reply": exc.lines})
        with contextlib.suppress(*NETWORK_ERRORS):
            await conn.send(b"QUIT\r\n")
    except NETWORK_ERRORS as exc:
        steps.append({"error": str(exc) or type(exc).__name__})
    detail = evidence(steps=steps)
    return ProbeResult(records=[observation(address, port, "ftp-anonymous", verdict, detail)])


async def _ftp_command(conn: ProbeConnection, command: str) -> list[str]:
    """Send one FTP command and return its whole reply; ReplyError if it cannot be matched."""
    verb = command.split(" ", 1)[0]
    early = await conn.unasked()
    if early:
        raise ReplyError(f"{len(early)} unasked bytes arrived before {verb} was sent")
    await conn.send(command.encode("ascii") + b"\r\n")
    reply = await conn.read_reply()
    late = await conn.unasked()
    if late:
        raise ReplyError(f"{len(late)} unasked bytes followed the reply to {verb}", reply)
    return reply


async def _http_head(conn: ProbeConnection, settings: ProbeSettings) -> list[str]:
    """Send HEAD / HTTP/1.0; return the status line and headers (empty if not HTTP).

    Bytes that came before the request answer nothing asked: not HTTP. The whole
    head gets one ``read_timeout``; what came in time is kept.
    """
    if await conn.unasked():
        return []
    await conn.send(b"HEAD / HTTP/1.0\r\nUser-Agent: rolecall-probe\r\nAccept: */*\r\n\r\n")
    status = (await conn.read_line()).decode("utf-8", errors="replace")
    if not re.match(r"HTTP/\d(\.\d)? \d{3}", status):
        return []
    lines = [status]
    with contextlib.suppress(*NETWORK_ERRORS):
        async with asyncio.timeout(settings.read_timeout):
            while len(lines) < 100:
                line = await conn.read_line()
                if not line:
                    break
                lines.append(line.decode("utf-8", errors="replace"))
    return lines


def _http_records(
    address: str, port: int, protocol: str, lines: list[str], certificate: dict[str, str]
) -> ProbeResult:
    """Return Observations and a Service for an HTTP(S) reply."""
    server = next(
        (ln.split(":", 1)[1].strip() for ln in lines if ln.lower().startswith("server:")), ""
    )
    product, version = product_version(server)
    detail = evidence(status=lines[0], headers=lines[1:], certificate=certificate)
    records: list[Record] = [
        observation(address, port, "protocol", protocol, detail),
        service(address, port, protocol, product=product, version=version, banner=lines[0]),
    ]
    if certificate:
        subject = certificate.get("subject", "")
        records.append(
            observation(address, port, "tls-certificate", subject, evidence(**certificate))
        )
    return ProbeResult(records=records)


async def probe_http(address: str, port: int, settings: ProbeSettings, *, tls: bool) -> ProbeResult:
    """Ask HEAD / over plain TCP (web) or after a TLS handshake (https); record the reply."""
    try:
        conn = await ProbeConnection.open(address, port, settings, tls=tls)
    except NETWORK_ERRORS:
        return ProbeResult()
    certificate = certificate_summary(conn.peer_certificate)
    names = certificate_hostnames(address, certificate_names(conn.peer_certificate))
    try:
        try:
            lines = await _http_head(conn, settings)
        except NETWORK_ERRORS:
            lines = []
        if lines:
            result = _http_records(address, port, "https" if tls else "http", lines, certificate)
            result.records += names
            return result
        if tls and bytes(conn.seen[:3]) not in (b"220", b"421", b"554"):
            # A TLS service that is neither HTTP nor SMTP: still worth its certificate. An
            # SMTP server may answer the early HEAD with 554 (Exim's synchronisation check).
            detail = evidence(certificate=certificate, seen=show_bytes(bytes(conn.seen[:512])))
            return ProbeResult(
                records=[
                    observation(address, port, "protocol", "tls", detail),
                    service(address, port, "tls"),
                    *names,
                ],
                fallback=True,
            )
        return ProbeResult(seen=bytes(conn.seen))
    finally:
        await conn.close()


def _text(item: str | bytes) -> str:
    """Return a TXT string as text (dpkt gives str or bytes depending on version)."""
    return item if isinstance(item, str) else item.decode("utf-8", errors="replace")


def dns_query(query_id: int) -> bytes:
    """Return a length-prefixed DNS-over-TCP query for version.bind CH TXT."""
    message = dpkt.dns.DNS(
        id=query_id,
        qd=[dpkt.dns.DNS.Q(name="version.bind", type=dpkt.dns.DNS_TXT, cls=dpkt.dns.DNS_CHAOS)],
    )
    data = bytes(message)
    return struct.pack("!H", len(data)) + data


async def probe_dns(address: str, port: int, settings: ProbeSettings) -> ProbeResult:
    """Send a version.bind CH TXT query over TCP; a well-formed reply to it is a DNS server."""
    try:
        conn = await ProbeConnection.open(address, port, settings)
    except NETWORK_ERRORS:
        return ProbeResult()
    query_id = secrets.randbelow(0x10000)
    try:
        if await conn.unasked():
            # Bytes before the query answer nothing asked: no verdict from them.
            return ProbeResult(seen=bytes(conn.seen))
        await conn.send(dns_query(query_id))
        length = struct.unpack("!H", await conn.read_exact(2))[0]
        reply = dpkt.dns.DNS(await conn.read_exact(length))
    except (*NETWORK_ERRORS, dpkt.UnpackError, struct.error):
        return ProbeResult(seen=bytes(conn.seen))
    finally:
        await conn.close()
    if reply.id != query_id or reply.qr != dpkt.dns.DNS_R:
        return ProbeResult(seen=bytes(conn.seen))
    texts = [" ".join(_text(t) for t in getattr(rr, "text", [])) for rr in reply.an]
    version = next((t for t in texts if t), "")
    detail = evidence(query="version.bind CH TXT", rcode=reply.rcode, answers=texts)
    named = _DNS_VERSION.match(version)
    product, number = (named.group(1), named.group(2)) if named else ("", version)
    return ProbeResult(
        records=[
            observation(address, port, "protocol", "dns", detail),
            service(address, port, "dns", product=product, version=number, banner=version),
        ]
    )
