"""The SOCKS probe: is this port a SOCKS4 or SOCKS5 proxy, does it want a password, does it relay?

SOCKS5 follows RFC 1928 (method selection) and RFC 1929 (username/password);
SOCKS4/4a its de-facto specification (reply 0x5A granted, 0x5B-0x5D refused).
The relay test only ever asks the proxy to CONNECT to rolecall's own canary.
"""

from __future__ import annotations

import ipaddress
import struct
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
)
from rolecall.probes.active.settings import ProbeSettings
from rolecall.probes.records import Observation

RELAYED: Final = "relayed to canary"
UNVERIFIED: Final = "handshake-open, relay unverified"
REFUSED: Final = "refused"

SOCKS5_GREETING: Final = b"\x05\x02\x00\x02"
"""Version 5 offering two methods: 0x00 no authentication and 0x02 username/password."""

_METHODS: Final = {0x00: "no-auth", 0x02: "username/password", 0xFF: "no-acceptable-method"}
_SOCKS4_USER: Final = b"rolecall\x00"


def socks5_connect_request(canary: Canary) -> bytes:
    """Return a SOCKS5 CONNECT whose destination is the canary (the only destination allowed)."""
    host = ipaddress.ip_address(canary.bind)
    kind = b"\x01" if host.version == 4 else b"\x04"
    return b"\x05\x01\x00" + kind + host.packed + struct.pack("!H", canary.port)


def socks4_connect_request(canary: Canary) -> bytes | None:
    """Return a SOCKS4 CONNECT to the canary, or None when the canary is not IPv4."""
    host = ipaddress.ip_address(canary.bind)
    if host.version != 4:
        return None
    return b"\x04\x01" + struct.pack("!H", canary.port) + host.packed + _SOCKS4_USER


async def _relay(conn: ProbeConnection, canary: Canary, settings: ProbeSettings) -> bool:
    """Send a fresh token through an opened tunnel; return whether the canary received it."""
    token = canary.new_token()
    try:
        await conn.send(token.encode("ascii") + b"\r\n")
    except NETWORK_ERRORS:
        return await canary.arrived(token, 0)  # forgets the token, which nothing will bring
    return await canary.arrived(token, settings.read_timeout)


async def _read_socks5_reply(conn: ProbeConnection) -> int:
    """Read a whole SOCKS5 CONNECT reply (header, bound address, port); return its REP code."""
    head = await conn.read_exact(4)
    if head[0] != 5:
        raise EOFError(f"not a SOCKS5 reply: {head.hex()}")
    if head[3] == 3:
        address_length = (await conn.read_exact(1))[0]
    else:
        address_length = {1: 4, 4: 16}.get(head[3], 0)
    await conn.read_exact(address_length + 2)
    await _nothing_more(conn, "after the CONNECT reply")
    return head[1]


async def _nothing_more(conn: ProbeConnection, where: str) -> None:
    """Raise ReplyError if bytes came that no request asked for (``where``: before/after what).

    The canary never speaks first, so an honest proxy sends nothing beyond its reply.
    """
    extra = await conn.unasked()
    if extra:
        raise ReplyError(f"{len(extra)} unasked bytes came {where}")


async def probe_socks5(
    address: str, port: int, settings: ProbeSettings, canary: Canary | None
) -> ProbeResult:
    """Offer no-auth and username/password; with no-auth accepted, verify relay to the canary."""
    result = ProbeResult()
    try:
        conn = await ProbeConnection.open(address, port, settings)
    except NETWORK_ERRORS:
        return result
    try:
        try:
            await _nothing_more(conn, "before the greeting")
            await conn.send(SOCKS5_GREETING)
            reply = await conn.read_exact(2)
            await _nothing_more(conn, "after the method reply")
        except NETWORK_ERRORS:
            result.seen = bytes(conn.seen)
            return result
        if reply[0] != 5:
            result.seen = bytes(conn.seen)
            return result
        method = _METHODS.get(reply[1], f"method 0x{reply[1]:02x}")
        seen = {"greeting": SOCKS5_GREETING.hex(), "reply": reply.hex(), "method": method}
        result.records += [
            observation(address, port, "protocol", "socks5", evidence(**seen)),
            observation(address, port, "socks5-auth", method, evidence(**seen)),
        ]
        auth = {"no-auth": "none", "username/password": "username/password"}.get(method, method)
        result.records.append(service(address, port, "socks5", auth=auth))
        if reply[1] == 0x00 and canary is not None:
            result.records.append(await _socks5_relay(conn, address, port, canary, settings))
    finally:
        await conn.close()
    return result


async def _socks5_relay(
    conn: ProbeConnection, address: str, port: int, canary: Canary, settings: ProbeSettings
) -> Observation:
    """Ask an open SOCKS5 proxy to CONNECT to the canary; return the socks5-relay Observation."""
    request = socks5_connect_request(canary)
    facts: dict[str, object] = {"canary": f"{canary.bind}:{canary.port}", "request": request.hex()}
    try:
        await conn.send(request)
        code = await _read_socks5_reply(conn)
        facts["reply_code"] = code
        arrived = code == 0 and await _relay(conn, canary, settings)
    except NETWORK_ERRORS as exc:
        facts["error"] = str(exc) or type(exc).__name__
        arrived = False
    facts["token_arrived"] = arrived
    value = RELAYED if arrived else UNVERIFIED
    return observation(address, port, "socks5-relay", value, evidence(**facts))


async def probe_socks4(
    address: str, port: int, settings: ProbeSettings, canary: Canary | None
) -> ProbeResult:
    """Send a SOCKS4 CONNECT to the canary; read the reply code; verify relay when granted."""
    result = ProbeResult()
    request = socks4_connect_request(canary) if canary is not None else None
    if request is None or canary is None:
        return result
    try:
        conn = await ProbeConnection.open(address, port, settings)
    except NETWORK_ERRORS:
        return result
    try:
        try:
            await _nothing_more(conn, "before the request")
            await conn.send(request)
            reply = await conn.read_exact(8)
            await _nothing_more(conn, "after the reply")
        except NETWORK_ERRORS:
            result.seen = bytes(conn.seen)
            return result
        if reply[0] not in (0, 4) or not 0x5A <= reply[1] <= 0x5D:
            result.seen = bytes(conn.seen)
            return result
        granted = reply[1] == 0x5A
        facts: dict[str, object] = {
            "canary": f"{canary.bind}:{canary.port}",
            "request": request.hex(),
            "reply": reply.hex(),
            "reply_code": f"0x{reply[1]:02x}",
        }
        arrived = granted and await _relay(conn, canary, settings)
        facts["token_arrived"] = arrived
        value = RELAYED if arrived else UNVERIFIED if granted else REFUSED
        result.records += [
            observation(address, port, "protocol", "socks4", evidence(**facts)),
            observation(address, port, "socks4-relay", value, evidence(**facts)),
            service(address, port, "socks4", auth="none" if granted else ""),
        ]
    finally:
        await conn.close()
    return result
