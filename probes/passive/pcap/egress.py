"""Link a proxy's outgoing connection to the client whose request caused it.

When a client asks proxy P (SOCKS, or HTTP with CONNECT) to connect to host H
port N, P opens its own TCP connection to H:N moments later (before it answers
the client). When both are in the capture, the outgoing connection is reported as an Observation
``kind="proxy-egress"`` on the proxy's address, ``port`` N, ``value`` the
client's address, ``detail`` JSON with client_port, server, server_port,
proxy_port and the request's name. A connection from P to port N that starts
within ``window`` seconds of the request is matched when its server is the
requested address, or the requested name resolved to it in the capture's DNS
answers, or (a name never resolved in the capture) when it is the only
candidate.

Each link whose request was seen granted (SOCKS ``succeeded``, CONNECT 2xx: the
tunnel was read, so the client's own copy exists) is also remembered by the
egress connection's endpoints (proxy, its source port, server, server port), so
the SMTP read on that connection can be marked as relayed for the client
(``relayed_for``). A request whose answer was never seen (a gap, a snap length)
still gives the observation, but its tunnel was not read, so the proxy's copy
stays the one that counts. Whichever was seen first, the request or the
connection's start, the link exists before the first mail of the connection is
complete (the client sends it only after the proxy's reply).
"""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import replace
from typing import Final

from rolecall.probes.passive.pcap.stream import detail, utc
from rolecall.probes.records import ConnectRequest, Observation, SmtpTransaction, SocksRequest

MAX_PER_KEY: Final = 256
MAX_NAMES: Final = 100_000

TunnelRequest = SocksRequest | ConnectRequest
_Start = tuple[float, str, int]  # ts, server, proxy-side source port
_Pending = tuple[float, TunnelRequest]
Endpoints = tuple[str, int, str, int]  # proxy, egress port, server, server port


def requested(req: TunnelRequest) -> tuple[str, str]:
    """The (address, name) a tunnel request asked for; one of them is empty."""
    if isinstance(req, SocksRequest):
        return req.request_host, req.request_name
    try:
        return str(ipaddress.ip_address(req.request_host.strip("[]"))), ""
    except ValueError:
        return "", req.request_host


def granted(req: TunnelRequest) -> bool:
    """Whether the proxy accepted the request (or its answer was not seen)."""
    if isinstance(req, SocksRequest):
        return req.status in ("", "succeeded")
    return req.status == 0 or 200 <= req.status < 300


def read_through(req: TunnelRequest) -> bool:
    """Whether the proxy's acceptance was seen, so that the tunnel itself was read."""
    if isinstance(req, SocksRequest):
        return req.status == "succeeded"
    return 200 <= req.status < 300


class EgressLinker:
    """Remembers recent connection starts and tunnel requests, and pairs them."""

    def __init__(self, window: float) -> None:
        """Start with nothing remembered; pairs further apart than ``window`` never match."""
        self.window = window
        self.starts: dict[tuple[str, int], deque[_Start]] = {}
        self.pending: dict[tuple[str, int], deque[_Pending]] = {}
        self.resolved: dict[str, set[str]] = {}
        self.links: dict[Endpoints, str] = {}

    def learn_name(self, name: str, address: str) -> None:
        """Remember a DNS answer (bounded)."""
        if len(self.resolved) >= MAX_NAMES:
            self.resolved.clear()
        self.resolved.setdefault(name.lower().rstrip("."), set()).add(address)

    def _matches(self, req: TunnelRequest, server: str) -> bool | None:
        """True if ``server`` is what was requested, False if not, None if unknown."""
        host, name = requested(req)
        if host:
            return host == server
        addresses = self.resolved.get(name.lower().rstrip("."))
        return None if addresses is None else server in addresses

    def started(
        self, client: str, client_port: int, server: str, port: int, ts: float
    ) -> list[Observation]:
        """A TCP connection opened (SYN seen); link it to a pending request if one fits."""
        pending = self.pending.get((client, port))
        if pending:
            for item in list(pending):
                req_ts, req = item
                if ts - req_ts > self.window:
                    pending.remove(item)
                    continue
                if self._matches(req, server) is not False:
                    pending.remove(item)
                    return [self._observation(req, server, client_port, ts)]
        if len(self.starts) >= MAX_NAMES:
            self.starts.clear()  # a connection flood: forget rather than grow without bound
        starts = self.starts.setdefault((client, port), deque(maxlen=MAX_PER_KEY))
        starts.append((ts, server, client_port))
        return []

    def request(self, req: TunnelRequest, req_ts: float) -> list[Observation]:
        """A tunnel request was read; link it to a connection the proxy already opened."""
        if not req.request_port or not granted(req):
            return []
        key = (req.proxy, req.request_port)
        starts = self.starts.get(key)
        if starts:
            fits = [s for s in starts if -1.0 <= s[0] - req_ts <= self.window]
            exact = [s for s in fits if self._matches(req, s[1])]
            unknown = [s for s in fits if self._matches(req, s[1]) is None]
            chosen = exact[:1] or (unknown if len(unknown) == 1 else [])
            if chosen:
                starts.remove(chosen[0])
                ts, server, port = chosen[0]
                return [self._observation(req, server, port, ts)]
        if len(self.pending) >= MAX_NAMES:
            self.pending.clear()
        self.pending.setdefault(key, deque(maxlen=MAX_PER_KEY)).append((req_ts, req))
        return []

    def marked(self, txn: SmtpTransaction) -> SmtpTransaction:
        """The transaction, marked relayed_for the client if its connection is a linked egress."""
        if txn.via_proxy:
            return txn  # the client's own copy, read inside its tunnel
        client = self.links.get((txn.client, txn.client_port, txn.server, txn.server_port))
        return replace(txn, relayed_for=client) if client else txn

    def forget(self, proxy: str, egress_port: int, server: str, server_port: int) -> None:
        """The connection is over: its port may be reused for a connection of its own."""
        self.links.pop((proxy, egress_port, server, server_port), None)

    def expire(self, now: float) -> None:
        """Forget starts and requests older than the window."""
        for table in (self.starts, self.pending):
            for key in list(table):
                entries = table[key]
                while entries and now - entries[0][0] > self.window:
                    entries.popleft()
                if not entries:
                    del table[key]

    def _observation(
        self, req: TunnelRequest, server: str, egress_port: int, ts: float
    ) -> Observation:
        """The proxy-egress observation for one matched pair (the link is remembered)."""
        if len(self.links) >= MAX_NAMES:
            self.links.clear()  # connections never seen to end: forget rather than grow
        if read_through(req):  # else the client's copy was never read: this one is the count
            self.links[req.proxy, egress_port, server, req.request_port] = req.client
        return Observation(
            address=req.proxy,
            kind="proxy-egress",
            source="pcap",
            seen=utc(ts),
            port=req.request_port,
            transport="tcp",
            value=req.client,
            detail=detail(
                client_port=req.client_port,
                proxy_port=req.proxy_port,
                egress_port=egress_port,
                server=server,
                server_port=req.request_port,
                request_name=requested(req)[1],
            ),
        )
