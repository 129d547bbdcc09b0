"""HTTP CONNECT (both directions of one connection) -> one ConnectRequest per request.

The client's request head (``CONNECT host:port HTTP/1.x``, its
``Proxy-Authorization: Basic`` user, the password only when
``PcapSettings.capture_socks_password`` asks; for another scheme, or a Basic
user that cannot be read, the scheme in parentheses such as ``(NTLM)``, so that
credentials given never look like none) and the proxy's reply status
make the record; the proxy also gets an Observation ``kind="http-connect"``
(value: ``granted`` for 2xx, ``auth-required`` for 407, ``refused`` otherwise)
and the client its ``User-Agent`` as ``http-user-agent``.
After a 2xx reply the rest of the stream is what the tunnel carries: it is
handed to a parser chosen by content (``factory``), with the real client as
client, the requested target as server and the proxy as ``via_proxy``, as for
SOCKS. Another reply with a Content-Length (a 407 asking for credentials,
which browsers answer on the same connection) is skipped and the next request
read; any other reply ends the analysis of the connection.

Heads are held up to ``MAX_HEAD`` bytes per direction: a longer request or
reply head, a reply that is not HTTP, a reply head cut by the end of the
connection and a 407 without ``Proxy-Authenticate`` each give one ReadWarning.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Final

from rolecall.probes.passive.connect_target import (
    connect_outcome,
    connect_target,
    credentials_given,
)
from rolecall.probes.passive.pcap.stream import (
    ParserFactory,
    PcapSettings,
    StreamContext,
    detail,
    text,
    utc,
)
from rolecall.probes.passive.pcap.tunnel import Tunnel
from rolecall.probes.records import ConnectRequest, Item, Observation, ReadWarning

MAX_HEAD: Final = 64 * 1024
_STATUS: Final = re.compile(rb"HTTP/\d(?:\.\d)? +(\d{3})(?:[ \t\r\n]|$)")


def head_end(buf: bytes) -> tuple[int, int] | None:
    """Where a head ends in ``buf``: (end of its last line, start of what follows) or None."""
    crlf, lf = buf.find(b"\r\n\r\n"), buf.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf, crlf + 4
    if lf >= 0:
        return lf, lf + 2
    return None


def head_lines(head: bytes) -> list[bytes]:
    """The lines of a head, without their CR/LF."""
    return [line.rstrip(b"\r") for line in head.split(b"\n")]


def _content_length(lines: list[bytes]) -> int:
    """The Content-Length a reply head states, or -1 (none, or not a number)."""
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return int(value.strip()[:18])
    return -1


class HttpConnectStream:
    """Parser of one HTTP CONNECT connection and, after a 2xx reply, of what it tunnels."""

    def __init__(self, ctx: StreamContext, settings: PcapSettings, factory: ParserFactory) -> None:
        """Wait for the client's request head."""
        self.ctx = ctx
        self.settings = settings
        self.factory = factory
        self.done = False
        self.state = "request"  # request, reply, tunnel
        self.cbuf = b""
        self.sbuf = b""
        self.ts = 0.0
        self.host = ""
        self.port = 0
        self.user = ""
        self.password = ""
        self.tunnel: Tunnel | None = None
        self.lost_early = False  # bytes the client sent ahead of the reply were dropped
        self.skip = 0  # bytes of a refusal's body still to pass over
        self.refused = False  # a refusal was read: the client may ask again

    def feed(self, from_client: bool, data: bytes, ts: float) -> list[Item]:
        """Consume bytes of one direction; return the request once answered, and tunnel records."""
        if self.done:
            return []
        if self.tunnel is not None:
            return self.tunnel.feed(from_client, data, ts)
        if from_client:
            self.cbuf += data
        else:
            if self.skip:
                passed = min(self.skip, len(data))
                self.skip -= passed
                data = data[passed:]
            self.sbuf += data
        out: list[Item] = []
        if self.state == "request":
            self._request(ts, out)
        if self.state == "reply":
            self._reply(ts, out)
        if self.tunnel is not None:
            cbuf, sbuf, self.cbuf, self.sbuf = self.cbuf, self.sbuf, b"", b""
            out += self.tunnel.feed_held(cbuf, sbuf, ts)
        return out

    def _request(self, ts: float, out: list[Item]) -> None:
        """Read the request head once it is complete; a head over the cap ends the analysis."""
        ends = head_end(self.cbuf)
        if ends is None:
            if len(self.cbuf) > MAX_HEAD or len(self.sbuf) > MAX_HEAD:
                out.append(self._warning(f"request head longer than {MAX_HEAD} bytes"))
                self._stop()
            return
        lines = head_lines(self.cbuf[: ends[0]])
        if not self._request_line(lines[0]):
            if not self.refused:  # after a refusal, any other request may follow
                out.append(self._warning("request is not an HTTP CONNECT"))
            self._stop()
            return
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"user-agent" and value.strip():
                out.append(self._agent(text(value.strip())[:1024], ts))
            if name == b"proxy-authorization":
                user, password = credentials_given(value)
                self.user = text(user)
                if self.settings.capture_socks_password:
                    self.password = text(password)
        self.ts, self.state = ts, "reply"
        self.cbuf = self.cbuf[ends[1] :]  # bytes sent ahead of the reply: the tunnel's

    def _request_line(self, line: bytes) -> bool:
        """Read the target of a ``CONNECT host:port HTTP/1.x`` line; say whether it is one."""
        parts = line.split()
        if len(parts) != 3 or parts[0] != b"CONNECT" or not parts[2].startswith(b"HTTP/"):
            return False
        self.host, self.port = connect_target(text(parts[1]))
        return True

    def _reply(self, ts: float, out: list[Item]) -> None:
        """Read the reply head once it is complete (skipping 1xx); log the request."""
        while True:
            if len(self.cbuf) > MAX_HEAD:  # the client sent this much before any reply
                self.cbuf, self.lost_early = b"", True
            ends = head_end(self.sbuf)
            if ends is None:
                if len(self.sbuf) > MAX_HEAD:
                    self._answered(self._status(self.sbuf), ts, out, "reply head never ended")
                return
            lines = head_lines(self.sbuf[: ends[0]])
            status = self._status(lines[0])
            self.sbuf = self.sbuf[ends[1] :]
            if 100 <= status < 200:
                continue
            problem = "" if status else "reply is not HTTP"
            if status == 407 and not any(
                line.partition(b":")[0].strip().lower() == b"proxy-authenticate"
                for line in lines[1:]
            ):
                problem = "407 reply without Proxy-Authenticate"
            length = _content_length(lines) if status >= 300 and not problem else -1
            if length < 0:
                self._answered(status, ts, out, problem)
                return
            # A refusal with a body of known length: the client may ask again on this connection.
            out.append(self._record(status))
            out.append(self._observation(status, ts))
            passed = min(length, len(self.sbuf))
            self.sbuf, self.skip = self.sbuf[passed:], length - passed
            self.state, self.user, self.password, self.refused = "request", "", "", True
            self._request(ts, out)
            if self.state != "reply":
                return

    @staticmethod
    def _status(head: bytes) -> int:
        """The status code of a reply's first line, or 0 if it is not an HTTP status line."""
        match = _STATUS.match(head)
        return int(match.group(1)) if match else 0

    def _answered(self, status: int, ts: float, out: list[Item], problem: str) -> None:
        """Log the request and its reply; a 2xx reply (without problem) opens the tunnel."""
        if problem:
            out.append(self._warning(problem))
        out.append(self._record(status))
        if status:
            out.append(self._observation(status, ts))
        if 200 <= status < 300 and not problem:
            self.state = "tunnel"
            inner = replace(
                self.ctx, server=self.host, server_port=self.port, via_proxy=self.ctx.server
            )
            self.tunnel = Tunnel(inner, self.settings, self.factory, opaque=self.lost_early)
        else:
            self._stop()

    def _stop(self) -> None:
        """Stop analysing this connection and drop what is held."""
        self.state, self.done, self.cbuf, self.sbuf = "closed", True, b"", b""

    def _record(self, status: int) -> ConnectRequest:
        """The request record, with the reply's status (0: none seen)."""
        return ConnectRequest(
            ts=utc(self.ts),
            client=self.ctx.client,
            client_port=self.ctx.client_port,
            proxy=self.ctx.server,
            proxy_port=self.ctx.server_port,
            source="pcap",
            user=self.user,
            password=self.password,
            status=status,
            request_host=self.host,
            request_port=self.port,
        )

    def _observation(self, status: int, ts: float) -> Observation:
        """The proxy's http-connect observation for one answered request."""
        return Observation(
            address=self.ctx.server,
            kind="http-connect",
            source="pcap",
            seen=utc(ts),
            port=self.ctx.server_port,
            transport="tcp",
            value=connect_outcome(status),
            detail=detail(
                client=self.ctx.client,
                request_host=self.host,
                request_port=self.port,
                status=status,
                user=self.user,
            ),
        )

    def _agent(self, agent: str, ts: float) -> Observation:
        """The client's User-Agent, as the HTTP reader reports it for other requests."""
        return Observation(
            address=self.ctx.client,
            kind="http-user-agent",
            source="pcap",
            seen=utc(ts),
            port=self.ctx.server_port,
            transport="tcp",
            value=agent,
            detail=detail(server=self.ctx.server, via_proxy=self.ctx.via_proxy),
        )

    def _warning(self, problem: str) -> ReadWarning:
        """A warning naming the file, the stream's first offset and its endpoints."""
        ctx = self.ctx
        where = f"{ctx.where}@{ctx.offset}" if ctx.offset >= 0 else ctx.where
        return ReadWarning(
            where,
            f"HTTP CONNECT {ctx.client}:{ctx.client_port} -> {ctx.server}:{ctx.server_port}: "
            f"{problem}; the connection was not analysed further",
            traffic=True,  # the capture holds what was sent faithfully: the file is sound
        )

    def gap(self, from_client: bool, size: int, ts: float) -> list[Item]:
        """Missing bytes: the tunnel parser resynchronises; a head with a hole ends here."""
        if self.tunnel is not None:
            return self.tunnel.gap(from_client, size, ts)
        return self.finish(ts)

    def finish(self, ts: float) -> list[Item]:
        """Connection over: log a request never (fully) answered, and end the tunnel parser."""
        out: list[Item] = []
        if self.done:
            return out
        if self.state == "request" and self.cbuf:
            out.append(self._warning("request head cut short"))
            line = self.cbuf.partition(b"\n")[0].rstrip(b"\r")
            if b"\n" in self.cbuf and self._request_line(line):
                self.ts = ts
                out.append(self._record(0))
        if self.state == "reply":
            status = self._status(self.sbuf) if self.sbuf else 0
            if self.sbuf:
                out.append(self._warning("reply head cut short"))
            out.append(self._record(status))
            if status:
                out.append(self._observation(status, ts))
        if self.tunnel is not None:
            out += self.tunnel.finish(ts)
        self._stop()
        return out
