"""SOCKS 4/4a/5 negotiation (both directions of one connection) -> one SocksRequest.

Fields and status strings follow Zeek's socks.log. Unlike Zeek, a SOCKS4
user id is kept in ``user``. After a successful CONNECT the rest of the
stream is what the tunnel carries: it is handed to a parser chosen by content
(``factory``), with the real client as client, the requested target as server
and the proxy as ``via_proxy``.
"""

from __future__ import annotations

import ipaddress
from typing import Final

from rolecall.probes.passive.pcap.stream import (
    ParserFactory,
    PcapSettings,
    StreamContext,
    text,
    utc,
)
from rolecall.probes.passive.pcap.tunnel import Tunnel
from rolecall.probes.records import Item, SocksRequest

MAX_HANDSHAKE: Final = 1024

V4_STATUS: Final = {
    0x5A: "succeeded",
    0x5B: "general SOCKS server failure",
    0x5C: "request failed because client is not running identd",
    0x5D: (
        "request failed because client's identd could not confirm the user ID string in the request"
    ),
}
V5_STATUS: Final = {
    0: "succeeded",
    1: "general SOCKS server failure",
    2: "connection not allowed by ruleset",
    3: "Network unreachable",
    4: "Host unreachable",
    5: "Connection refused",
    6: "TTL expired",
    7: "Command not supported",
    8: "Address type not supported",
}


def v4_status(code: int) -> str:
    """Return Zeek's name for a SOCKS4 reply code."""
    return V4_STATUS.get(code, f"unknown-{code}")


def v5_status(code: int) -> str:
    """Return Zeek's name for a SOCKS5 reply code."""
    return V5_STATUS.get(code, f"unknown-{code}")


def v5_address(buf: bytes, pos: int) -> tuple[str, str, int, int] | None:
    """Parse ATYP, address and port at ``pos``: (host, name, port, end) or None if incomplete."""
    if len(buf) <= pos:
        return None
    atyp = buf[pos]
    if atyp == 1:
        end = pos + 5
        host, name = (str(ipaddress.IPv4Address(buf[pos + 1 : end])) if len(buf) >= end else ""), ""
    elif atyp == 4:
        end = pos + 17
        host, name = (str(ipaddress.IPv6Address(buf[pos + 1 : end])) if len(buf) >= end else ""), ""
    elif atyp == 3:
        if len(buf) <= pos + 1:
            return None
        end = pos + 2 + buf[pos + 1]
        host, name = "", text(buf[pos + 2 : end])
    else:
        raise ValueError(f"address type {atyp}")
    if len(buf) < end + 2:
        return None
    return host, name, buf[end] << 8 | buf[end + 1], end + 2


class SocksStream:
    """Parser of one SOCKS connection and, after CONNECT, of what it tunnels."""

    def __init__(self, ctx: StreamContext, settings: PcapSettings, factory: ParserFactory) -> None:
        """Wait for the client's greeting."""
        self.ctx = ctx
        self.settings = settings
        self.factory = factory
        self.done = False
        self.cbuf = b""
        self.sbuf = b""
        self.state = "greet"
        self.version = 0
        self.method = 0
        self.command = 1
        self.fields: dict[str, object] = {}
        self.ts = 0.0
        self.logged = False
        self.tunnel: Tunnel | None = None

    def feed(self, from_client: bool, data: bytes, ts: float) -> list[Item]:
        """Consume bytes of one direction; return the request once answered, and tunnel records."""
        if self.done:
            return []
        if self.tunnel is not None:
            return self.tunnel.feed(from_client, data, ts)
        if from_client:
            self.cbuf += data
        else:
            self.sbuf += data
        out: list[Item] = []
        try:
            while self._step(ts, out):
                pass
        except ValueError:
            self.state = "broken"
        if len(self.cbuf) > MAX_HANDSHAKE or len(self.sbuf) > MAX_HANDSHAKE:
            self.state = "broken"
        if self.state == "broken":
            out += self.finish(ts)
        elif self.tunnel is not None:
            cbuf, sbuf, self.cbuf, self.sbuf = self.cbuf, self.sbuf, b"", b""
            out += self.tunnel.feed_held(cbuf, sbuf, ts)
        return out

    def _step(self, ts: float, out: list[Item]) -> bool:
        """Advance the negotiation by one message if it is complete; say whether it did."""
        c, s = self.cbuf, self.sbuf
        if self.state == "greet":
            if not c:
                return False
            self.version, self.ts = c[0], ts
            if c[0] == 5:
                if len(c) < 2 or len(c) < 2 + c[1]:
                    return False
                self.cbuf, self.state = c[2 + c[1] :], "method"
                return True
            if c[0] == 4:
                self.state = "request"
                return True
            raise ValueError("not SOCKS")
        if self.state == "method":
            if len(s) < 2:
                return False
            self.method, self.sbuf = s[1], s[2:]
            self.state = "auth" if self.method == 2 else "request"
            if self.method == 0xFF:
                self.state = "broken"
            return True
        if self.state == "auth":
            return self._auth(c)
        if self.state == "auth-reply":
            if len(s) < 2:
                return False
            self.sbuf = s[2:]
            if s[1] != 0:
                self.fields["status"] = v5_status(s[1])
                self.state = "broken"
            else:
                self.state = "request"
            return True
        if self.state == "request":
            return self._request_v5(c, ts) if self.version == 5 else self._request_v4(c, ts)
        if self.state == "reply":
            return self._reply_v5(s, ts, out) if self.version == 5 else self._reply_v4(s, ts, out)
        return False

    def _auth(self, c: bytes) -> bool:
        """Read the username/password sub-negotiation (RFC 1929)."""
        if len(c) < 2:
            return False
        ulen = c[1]
        if len(c) < 3 + ulen:
            return False
        plen = c[2 + ulen]
        if len(c) < 3 + ulen + plen:
            return False
        self.fields["user"] = text(c[2 : 2 + ulen])
        if self.settings.capture_socks_password:
            self.fields["password"] = text(c[3 + ulen : 3 + ulen + plen])
        self.cbuf, self.state = c[3 + ulen + plen :], "auth-reply"
        return True

    def _request_v5(self, c: bytes, ts: float) -> bool:
        """Read a SOCKS5 request."""
        if len(c) < 4:
            return False
        parsed = v5_address(c, 3)
        if parsed is None:
            return False
        host, name, port, end = parsed
        self.fields.update(request_host=host, request_name=name, request_port=port)
        self.cbuf, self.state, self.ts = c[end:], "reply", ts
        self.command = c[1]
        return True

    def _request_v4(self, c: bytes, ts: float) -> bool:
        """Read a SOCKS4 or 4a request (user id, then a name if the address is 0.0.0.x)."""
        if len(c) < 9:
            return False
        nul = c.find(b"\0", 8)
        if nul < 0:
            return False
        ip = c[4:8]
        name, end = "", nul + 1
        if ip[:3] == b"\0\0\0" and ip[3]:
            nul2 = c.find(b"\0", end)
            if nul2 < 0:
                return False
            name, end = text(c[end:nul2]), nul2 + 1
        self.fields.update(
            user=text(c[8:nul]),
            request_host="" if name else str(ipaddress.IPv4Address(ip)),
            request_name=name,
            request_port=c[2] << 8 | c[3],
        )
        self.cbuf, self.state, self.ts = c[end:], "reply", ts
        self.command = c[1]
        return True

    def _reply_v5(self, s: bytes, ts: float, out: list[Item]) -> bool:
        """Read a SOCKS5 reply and log the request."""
        if len(s) < 4:
            return False
        parsed = v5_address(s, 3)
        if parsed is None:
            return False
        host, _, port, end = parsed
        self.fields.update(status=v5_status(s[1]), bound_host=host, bound_port=port)
        self.sbuf = s[end:]
        self._opened(s[1] == 0, out)
        return True

    def _reply_v4(self, s: bytes, ts: float, out: list[Item]) -> bool:
        """Read a SOCKS4 reply and log the request."""
        if len(s) < 8:
            return False
        self.fields.update(
            status=v4_status(s[1]),
            bound_host=str(ipaddress.IPv4Address(s[4:8])),
            bound_port=s[2] << 8 | s[3],
        )
        self.sbuf = s[8:]
        self._opened(s[1] == 0x5A, out)
        return True

    def _opened(self, success: bool, out: list[Item]) -> None:
        """Log the request; a successful CONNECT turns the rest of the stream into a tunnel."""
        out.append(self._record())
        self.logged = True
        if success and self.command == 1:
            f = self.fields
            self.state = "tunnel"
            inner = StreamContext(
                client=self.ctx.client,
                client_port=self.ctx.client_port,
                server=str(f.get("request_host") or f.get("request_name") or ""),
                server_port=int(str(f.get("request_port", 0))),
                where=self.ctx.where,
                via_proxy=self.ctx.server,
            )
            self.tunnel = Tunnel(inner, self.settings, self.factory)
        else:
            self.state = "closed"

    def _record(self) -> SocksRequest:
        """Build the request record from what was read so far."""
        f = self.fields
        return SocksRequest(
            ts=utc(self.ts),
            client=self.ctx.client,
            client_port=self.ctx.client_port,
            proxy=self.ctx.server,
            proxy_port=self.ctx.server_port,
            source="pcap",
            version=self.version,
            user=str(f.get("user", "")),
            password=str(f.get("password", "")),
            status=str(f.get("status", "")),
            request_host=str(f.get("request_host", "")),
            request_name=str(f.get("request_name", "")),
            request_port=int(str(f.get("request_port", 0))),
            bound_host=str(f.get("bound_host", "")),
            bound_port=int(str(f.get("bound_port", 0))),
        )

    def gap(self, from_client: bool, size: int, ts: float) -> list[Item]:
        """Missing bytes: the tunnel parser resynchronises; a broken handshake ends here."""
        if self.tunnel is not None:
            return self.tunnel.gap(from_client, size, ts)
        self.state = "broken"
        return self.finish(ts)

    def finish(self, ts: float) -> list[Item]:
        """Connection over: log a request never answered, and end the tunnel parser."""
        out: list[Item] = []
        if (
            not self.logged
            and self.version in (4, 5)
            and ("request_port" in self.fields or "user" in self.fields)
        ):
            out.append(self._record())
            self.logged = True
        if self.tunnel is not None:
            out += self.tunnel.finish(ts)
        self.done = True
        return out
