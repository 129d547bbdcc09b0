"""What a port was seen to speak, which beats what its number suggests.

Flows give a server roles by port number alone (443: web-server, https-server).
A port rolecall's probe heard speak something else (a SOCKS proxy on 443), or
that carried SOCKS requests, or answered HTTP CONNECT as a proxy (2xx or 407),
in a capture, is not what its number suggests: its
flows give the server no role, and roles they gave before are withdrawn once no
other port supports them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Final

from sqlalchemy import Connection, delete, func, or_, select, update

from rolecall.inventory.sql.in_lists import in_list
from rolecall.inventory.tables import (
    CONNECT_TABLE,
    FLOW_TABLE,
    OBSERVATION_TABLE,
    ROLE_TABLE,
    SOCKS_TABLE,
)

GUESSED: Final[dict[int, frozenset[str]]] = {
    80: frozenset({"http"}),
    8080: frozenset({"http"}),
    443: frozenset({"https", "http", "tls"}),
    53: frozenset({"dns"}),
    22: frozenset({"ssh"}),
    143: frozenset({"imap"}),
    993: frozenset({"imap", "tls"}),
    110: frozenset({"pop3"}),
    995: frozenset({"pop3", "tls"}),
}
"""TCP ports whose flows give server roles, and the protocols that agree with the guess."""

PROBE_SOURCE: Final = "probe"
HTTP_PROXY: Final = "http-proxy"  # what a port answering CONNECT as a proxy speaks

Pair = tuple[str, int]


def _heard(connection: Connection, addresses: Sequence[str] | None) -> dict[Pair, set[str]]:
    """What each guessed port of these addresses (all if None) was seen to speak."""
    obs, socks, connect = OBSERVATION_TABLE, SOCKS_TABLE, CONNECT_TABLE
    ports = sorted(GUESSED)
    spoken = select(obs.c.address, obs.c.port, obs.c.value).where(
        obs.c.kind == "protocol",
        obs.c.source == PROBE_SOURCE,
        obs.c.transport == "tcp",
        obs.c.port.in_(ports),
    )
    carried = (
        select(socks.c.proxy, socks.c.proxy_port, socks.c.version)
        .where(socks.c.proxy_port.in_(ports))
        .distinct()
    )
    proxied = (
        select(connect.c.proxy, connect.c.proxy_port)
        .where(
            connect.c.proxy_port.in_(ports),
            or_(connect.c.status.between(200, 299), connect.c.status == 407),
        )
        .distinct()
    )
    if addresses is not None:
        if not addresses:
            return {}
        dialect = connection.dialect
        spoken = spoken.where(in_list(dialect, obs.c.address, addresses))
        carried = carried.where(in_list(dialect, socks.c.proxy, addresses))
        proxied = proxied.where(in_list(dialect, connect.c.proxy, addresses))
    heard: dict[Pair, set[str]] = {}
    for address, port, value in connection.execute(spoken):
        heard.setdefault((address, port), set()).add(str(value))
    for address, port, version in connection.execute(carried):
        heard.setdefault((address, port), set()).add(f"socks{version}")
    for address, port in connection.execute(proxied):
        heard.setdefault((address, port), set()).add(HTTP_PROXY)
    return heard


def _contradicted(heard: dict[Pair, set[str]]) -> set[Pair]:
    """The ports heard speaking, but nothing their number suggests."""
    return {pair for pair, spoken in heard.items() if not spoken & GUESSED[pair[1]]}


class PortSpeech:
    """Which (server, guessed port) pairs speak something else, looked up once per server."""

    def __init__(self, connection: Connection) -> None:
        """Prepare lookups in ``connection``'s store."""
        self._connection = connection
        self._known: dict[str, set[int]] = {}
        self._everything = False

    def load_all(self) -> None:
        """Read every server's ports at once (a derivation that reads everything)."""
        for address, port in _contradicted(_heard(self._connection, None)):
            self._known.setdefault(address, set()).add(port)
        self._everything = True

    def learn(self, servers: Iterable[str]) -> None:
        """Read these servers' ports in a few statements (not one lookup per server later)."""
        if self._everything:
            return
        unknown = sorted({server for server in servers if server not in self._known})
        for server in unknown:
            self._known[server] = set()
        for address, port in _contradicted(_heard(self._connection, unknown)):
            self._known[address].add(port)

    def speaks_otherwise(self, server: str, port: int, transport: str = "tcp") -> bool:
        """Whether this server's port was seen to speak something its number does not suggest."""
        if transport != "tcp" or port not in GUESSED:
            return False
        if server not in self._known:
            self.learn([server])
        return port in self._known.get(server, set())


def withdraw_guesses(
    connection: Connection,
    pairs: Iterable[Pair],
    speech: PortSpeech,
    given: Mapping[tuple[str, int], tuple[tuple[str, ...], str]],
) -> set[str]:
    """Delete server roles resting on flows to ports now heard speaking otherwise, or narrow
    them to the flows left; return the hosts whose roles changed.

    ``given``: the server (and client) roles flows give, by (transport, port). A
    role stays while an answered flow of the same source to another port that
    gives it (and is not itself heard speaking otherwise) supports it.
    """
    roles_table = ROLE_TABLE
    withdrawn: set[str] = set()
    for address in sorted({address for address, port in pairs}):
        wrong = {port for port in GUESSED if speech.speaks_otherwise(address, port)}
        if not wrong:
            continue
        guessed = sorted({role for port in wrong for role in given.get(("tcp", port), ((), ""))[0]})
        held = connection.execute(
            select(roles_table.c.id, roles_table.c.role, roles_table.c.source).where(
                roles_table.c.address == address,
                roles_table.c.source != PROBE_SOURCE,
                roles_table.c.role.in_(guessed),
            )
        ).all()
        for rid, role, source in held:
            others = [
                key
                for key, (servers, _) in given.items()
                if role in servers and not (key[0] == "tcp" and key[1] in wrong)
            ]
            span = _flow_span(connection, address, source, others)
            if span is None:
                connection.execute(delete(roles_table).where(roles_table.c.id == rid))
                withdrawn.add(address)
            else:
                # Spanned by the flows that still support it, as a full derivation spans it.
                first, last = span
                connection.execute(
                    update(roles_table)
                    .where(roles_table.c.id == rid)
                    .values(first_seen=first, last_seen=last)
                )
                withdrawn.add(address)
    return withdrawn


def _flow_span(
    connection: Connection, server: str, source: str, keys: list[tuple[str, int]]
) -> tuple[datetime, datetime] | None:
    """First and last answered flow of ``source`` to one of the (transport, port) keys of a
    server (None if there is none)."""
    if not keys:
        return None
    flows = FLOW_TABLE
    to_key = or_(*((flows.c.transport == t) & (flows.c.server_port == p) for t, p in keys))
    first, last = connection.execute(
        select(func.min(flows.c.first_seen), func.max(flows.c.last_seen))
        .where(flows.c.server == server, flows.c.source == source, flows.c.answered.is_(True))
        .where(to_key)
    ).one()
    return None if first is None else (first, last)
