"""The HTTP CONNECT probe: is this port an HTTP proxy, does it want credentials, does it relay?

The probe asks ``CONNECT canary:port HTTP/1.1`` (RFC 9110 section 9.3.6) and
nothing else: the only destination it ever names is rolecall's own canary. A
fresh token is sent after any 2xx reply, and it must reach the canary for the
proxy to count as open. Without it, only a tunnel's answer is a proxy's: a
200 with no body framing (RFC 9110 forbids Content-Length and
Transfer-Encoding in a 2xx to CONNECT) whose connection then stays open and
silent; 204, 206, a page or an empty page that closes are a web server's. A
407 with ``Proxy-Authenticate`` is a proxy demanding credentials. Any other
reply is a proxy only if it names its proxy agent (``Proxy-Agent``) or the
port forwards a plain ``GET http://canary/token`` to the canary: ``Via`` and
``X-Squid-Error`` come from reverse proxies and CDNs too, so a web server
answering CONNECT with 400, 405 or 501 is not a proxy whatever it carries.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Final

from rolecall.probes.active.canary import Canary
from rolecall.probes.active.connection import (
    NETWORK_ERRORS,
    ProbeConnection,
    ProbeResult,
    ReplyError,
    evidence,
    observation,
    service,
    show_bytes,
)
from rolecall.probes.active.services import product_version
from rolecall.probes.active.settings import ProbeSettings
from rolecall.probes.records import Record

RELAYED: Final = "relayed to canary"
UNVERIFIED: Final = "200 without relay"
REFUSED: Final = "refused"
INCONCLUSIVE: Final = "inconclusive"

MAX_HEADER_LINES: Final = 100
"""Header lines one reply head may have; a longer head is a flood and is not read on."""

_STATUS: Final = re.compile(r"HTTP/\d(?:\.\d)? (\d{3})(?=[ \r\n]|$)")
_PROXY_HINTS: Final = frozenset(
    {"proxy-agent", "proxy-authenticate", "proxy-connection", "via", "x-squid-error"}
)
"""Headers proxies send, kept as evidence: Varnish, CDNs, Apache ProxyVia and reverse Squids
add Via or X-Squid-Error to a web server's own refusals, so they prove nothing."""
_PROXY_AGENT: Final = "proxy-agent"
"""The header a forwarding proxy names itself with when it answers CONNECT; no reverse
proxy or CDN adds it, so a refusal carrying it is a proxy's."""
_BODY_HEADERS: Final = frozenset({"content-length", "transfer-encoding", "content-type"})
"""Headers of a reply with a body (even an empty one), which a tunnel's 2xx never has:
RFC 9110 9.3.6 forbids Content-Length and Transfer-Encoding there."""
_SHOWN_HEADERS: Final = 20
_SHOWN_CHARS: Final = 200
_FORWARD_GRACE: Final = 0.2
"""Seconds to wait for a forwarded GET's token after the proxy replied (it connects first)."""


@dataclass(slots=True)
class ReplyHead:
    """The status line and header lines of one HTTP reply."""

    status: int
    lines: list[str]
    headers: dict[str, list[str]] = field(default_factory=dict)

    def header(self, name: str) -> str:
        """Return every value of one header (case-insensitive), joined by ", "."""
        return ", ".join(self.headers.get(name.lower(), []))


def canary_authority(canary: Canary) -> str:
    """Return ``host:port`` of the canary for a request line (an IPv6 host in brackets)."""
    host = ipaddress.ip_address(canary.bind)
    shown = f"[{host.compressed}]" if host.version == 6 else host.compressed
    return f"{shown}:{canary.port}"


def connect_request(canary: Canary) -> bytes:
    """Return the CONNECT request whose only destination is the canary."""
    authority = canary_authority(canary)
    return (
        f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: rolecall-probe\r\n\r\n"
    ).encode("ascii")


def forward_request(canary: Canary, token: str) -> bytes:
    """Return a plain GET through a proxy to the canary, the token in its path."""
    authority = canary_authority(canary)
    return (
        f"GET http://{authority}/{token} HTTP/1.1\r\nHost: {authority}\r\n"
        "User-Agent: rolecall-probe\r\nConnection: close\r\n\r\n"
    ).encode("ascii")


def _shown(text: str) -> str:
    """Return hostile reply text safe to store and show, cut to a few hundred characters."""
    return show_bytes(text[:_SHOWN_CHARS].encode("utf-8", errors="replace"))


async def read_head(conn: ProbeConnection, settings: ProbeSettings) -> ReplyHead | None:
    """Read one reply's status line and headers; None if it does not begin like HTTP.

    The whole head must come within ``read_timeout``, each line within
    ``max_line_bytes``, all of it within ``max_reply_bytes`` and MAX_HEADER_LINES
    lines; past a bound, or on a stream that ends inside the head, ReplyError
    or EOFError says which.
    """
    head: ReplyHead | None = None
    try:
        async with asyncio.timeout(settings.read_timeout):
            buffered = await conn.wait_for_line(settings.read_timeout)
            match = _STATUS.match(buffered[:64].decode("ascii", errors="replace"))
            if match is None:
                return None
            first = await _next_line(conn, settings, "status line")
            head = ReplyHead(int(match.group(1)), [first.decode("utf-8", errors="replace")])
            size = len(first)
            while line := await _next_line(conn, settings, "header line"):
                size += len(line)
                if size > settings.max_reply_bytes:
                    raise ReplyError(f"reply head longer than {settings.max_reply_bytes} bytes")
                if len(head.lines) > MAX_HEADER_LINES:
                    raise ReplyError(f"reply head longer than {MAX_HEADER_LINES} header lines")
                _add_header(head, line)
    except TimeoutError:
        if head is None:
            return None
        raise ReplyError(f"reply head not finished within {settings.read_timeout:g} s") from None
    except EOFError:
        # A sloppy server may close without the blank line: what came is the head.
        if head is None:
            return None
    return head


async def _next_line(conn: ProbeConnection, settings: ProbeSettings, what: str) -> bytes:
    """Return the next whole line (b"" for the blank line ending a head); bounded, or raise."""
    buffered = await conn.wait_for_line(settings.read_timeout)
    newline = buffered.find(b"\n")
    if 0 <= newline <= settings.max_line_bytes:
        return await conn.read_line()
    if len(buffered) >= settings.max_line_bytes:
        raise ReplyError(f"{what} longer than {settings.max_line_bytes} bytes")
    raise EOFError("stream closed inside the reply head")


def _add_header(head: ReplyHead, line: bytes) -> None:
    """Add one header line to ``head`` (a line without a colon is kept, not parsed)."""
    text = line.decode("utf-8", errors="replace")
    head.lines.append(text)
    name, colon, value = text.partition(":")
    if colon:
        head.headers.setdefault(name.strip().lower(), []).append(value.strip())


def _proxy_records(
    address: str, port: int, head: ReplyHead, verdict: str, facts: dict[str, object]
) -> list[Record]:
    """Return the protocol and relay observations and the Service of a port found a proxy."""
    facts["status"] = _shown(head.lines[0])
    facts["headers"] = [_shown(line) for line in head.lines[1 : _SHOWN_HEADERS + 1]]
    detail = evidence(**facts)
    agent = head.header("server") or head.header("proxy-agent")
    product, version = product_version(agent)
    challenge = head.header("proxy-authenticate")
    auth = "none" if verdict == RELAYED else challenge.split(" ", 1)[0].lower()
    records: list[Record] = [observation(address, port, "protocol", "http-proxy", detail)]
    if verdict:
        records.append(observation(address, port, "http-proxy-relay", verdict, detail))
    if challenge:
        records.append(observation(address, port, "http-proxy-auth", _shown(challenge), detail))
    records.append(
        service(
            address,
            port,
            "http-proxy",
            product=product,
            version=version,
            auth=_shown(auth),
            banner=_shown(head.lines[0]),
        )
    )
    return records


def _inconclusive(address: str, port: int, reason: str, facts: dict[str, object]) -> ProbeResult:
    """Return the one observation of a CONNECT reply that began as HTTP but says nothing sure."""
    facts["reason"] = reason
    detail = evidence(**facts)
    return ProbeResult(
        records=[observation(address, port, "http-proxy-relay", INCONCLUSIVE, detail)]
    )


def _tunnel_answer(head: ReplyHead) -> bool:
    """Return whether a reply is a tunnel's: 200 (not 204 or 206) without any body framing."""
    return head.status == 200 and not _BODY_HEADERS & set(head.headers)


async def _held_open_silent(conn: ProbeConnection) -> bool:
    """Return whether the peer keeps the tunnel open and has sent nothing into it."""
    try:
        # A zero wait takes only what already came: bytes, or b"" for a close.
        await conn.wait_for_data(0)
    except TimeoutError:
        return True
    except NETWORK_ERRORS:
        return False
    return False


async def _tunnel_relays(conn: ProbeConnection, canary: Canary, settings: ProbeSettings) -> bool:
    """Send a fresh token through an opened tunnel; return whether the canary received it."""
    token = canary.new_token()
    try:
        await conn.send(token.encode("ascii") + b"\r\n")
    except NETWORK_ERRORS:
        # Asking with no wait also ends the canary's wait for this token.
        return await canary.arrived(token, 0)
    return await canary.arrived(token, settings.read_timeout)


async def _forwards_get(address: str, port: int, canary: Canary, settings: ProbeSettings) -> bool:
    """Ask for ``GET http://canary/token``; return whether the token reached the canary.

    A forwarding proxy connects to the canary before it answers, so once its reply
    is in, a short grace is enough; a web server never forwards anything.
    """
    token = canary.new_token()
    try:
        conn = await ProbeConnection.open(address, port, settings)
    except NETWORK_ERRORS:
        return await canary.arrived(token, 0)
    try:
        with contextlib.suppress(*NETWORK_ERRORS):
            if not await conn.unasked():
                await conn.send(forward_request(canary, token))
                await read_head(conn, settings)
    finally:
        await conn.close()
    return await canary.arrived(token, _FORWARD_GRACE)


async def probe_http_proxy(
    address: str, port: int, settings: ProbeSettings, canary: Canary | None
) -> ProbeResult:
    """Ask CONNECT to the canary; classify the reply as an open, password or refusing proxy.

    Without a canary nothing is asked: there is no other destination a proxy may
    be asked for. A reply that is not a proxy's gives no records, only bytes seen.
    """
    if canary is None:
        return ProbeResult()
    request = connect_request(canary)
    facts: dict[str, object] = {
        "canary": canary_authority(canary),
        "request": request.split(b"\r\n", 1)[0].decode("ascii"),
    }
    try:
        conn = await ProbeConnection.open(address, port, settings)
    except NETWORK_ERRORS:
        return ProbeResult()
    try:
        try:
            if await conn.unasked():
                return ProbeResult(seen=bytes(conn.seen))
            await conn.send(request)
            head = await read_head(conn, settings)
        except ReplyError as exc:
            return _inconclusive(address, port, exc.reason, facts)
        except NETWORK_ERRORS:
            return ProbeResult(seen=bytes(conn.seen))
        if head is None:
            return ProbeResult(seen=bytes(conn.seen))
        return await _judge(conn, head, address, port, canary, settings, facts)
    finally:
        await conn.close()


async def _judge(
    conn: ProbeConnection,
    head: ReplyHead,
    address: str,
    port: int,
    canary: Canary,
    settings: ProbeSettings,
    facts: dict[str, object],
) -> ProbeResult:
    """Turn the reply to CONNECT into records: a proxy's verdict, or nothing for a web server."""
    facts["status_code"] = head.status
    if head.status == 407:
        if not head.header("proxy-authenticate"):
            return _inconclusive(address, port, "407 without Proxy-Authenticate", facts)
        return ProbeResult(records=_proxy_records(address, port, head, "", facts))
    if 200 <= head.status < 300:
        arrived = await _tunnel_relays(conn, canary, settings)
        facts["token_arrived"] = arrived
        if arrived:
            return ProbeResult(records=_proxy_records(address, port, head, RELAYED, facts))
        if not _tunnel_answer(head) or not await _held_open_silent(conn):
            # A page, an empty page or a close answered CONNECT: a web server, no tunnel.
            return ProbeResult(seen=bytes(conn.seen))
        return ProbeResult(records=_proxy_records(address, port, head, UNVERIFIED, facts))
    forwarded = await _forwards_get(address, port, canary, settings)
    facts["proxy_headers"] = sorted(_PROXY_HINTS & set(head.headers))
    facts["forwarded_get_to_canary"] = forwarded
    if forwarded or _PROXY_AGENT in head.headers:
        return ProbeResult(records=_proxy_records(address, port, head, REFUSED, facts))
    return ProbeResult(seen=bytes(conn.seen))
