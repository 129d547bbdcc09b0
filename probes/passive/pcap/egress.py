"""Link a SOCKS proxy's outgoing connection to the client whose request caused it.

When a client asks proxy P to CONNECT to host H port N, P opens its own TCP
connection to H:N moments later (before it answers the client). When both are
in the capture, the outgoing connection is reported as an Observation
``kind="proxy-egress"`` on the proxy's address, ``port`` N, ``value`` the
client's address, ``detail`` JSON with client_port, server, server_port,
proxy_port and the request's name. A connection from P to port N that starts
within ``window`` seconds of the request is matched when its server is the
requested address, or the requested name resolved to it in the capture's DNS
answers, or (a name never resolved in the capture) when it is the only
candidate.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from rolecall.probes.passive.pcap.stream import detail, utc
from rolecall.probes.records import Observation, SocksRequest

MAX_PER_KEY: Final = 256
MAX_NAMES: Final = 100_000

_Start = tuple[float, str, int]  # ts, server, proxy-side source port
_Pending = tuple[float, SocksRequest]


class EgressLinker:
    """Remembers recent connection starts and SOCKS requests, and pairs them."""

    def __init__(self, window: float) -> None:
        """Start with nothing remembered; pairs further apart than ``window`` never match."""
        self.window = window
        self.starts: dict[tuple[str, int], deque[_Start]] = {}
        self.pending: dict[tuple[str, int], deque[_Pending]] = {}
        self.resolved: dict[str, set[str]] = {}

    def learn_name(self, name: str, address: str) -> None:
        """Remember a DNS answer (bounded)."""
        if len(self.resolved) >= MAX_NAMES:
            self.resolved.clear()
        self.resolved.setdefault(name.lower().rstrip("."), set()).add(address)

    def _matches(self, req: SocksRequest, server: str) -> bool | None:
        """True if ``server`` is what was requested, False if not, None if unknown."""
        if req.request_host:
            return req.request_host == server
        addresses = self.resolved.get(req.request_name.lower().rstrip("."))
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

    def request(self, req: SocksRequest, req_ts: float) -> list[Observation]:
        """A SOCKS request was read; link it to a connection the proxy already opened."""
        if not req.request_port or req.status not in ("", "succeeded"):
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
        self, req: SocksRequest, server: str, egress_port: int, ts: float
    ) -> Observation:
        """The proxy-egress observation for one matched pair."""
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
                request_name=req.request_name,
            ),
        )
