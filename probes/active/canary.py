"""The canary: a listener rolecall opens on its own address to verify that a proxy relays.

A SOCKS relay test asks the proxy to connect to the canary and nowhere else,
sends a random token through the tunnel and checks the token arrives here.
Nothing is kept per connection: each reads at most a few hundred bytes within
the read timeout, and past ``max_connections`` at once a connection is closed
unread, so a proxy flooding the canary costs neither memory nor descriptors.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket

_TOKEN_BYTES = 16
_MAX_READ = 256
MAX_CONNECTIONS = 256
"""Canary connections open at once: a probe has at most one relay in flight per proxy
connection and each ends within the read timeout, so this is eight times the default probe
concurrency (32) and bounds what a flood holds."""


def local_address_toward(target: str) -> str:
    """Return this host's source address for packets to ``target`` (a UDP connect sends nothing)."""
    family = socket.AF_INET6 if ipaddress.ip_address(target).version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((target, 9))
        return str(sock.getsockname()[0])


class Canary:
    """A TCP listener on one of rolecall's own addresses that recognises relay tokens."""

    def __init__(
        self, bind: str, read_timeout: float, max_connections: int = MAX_CONNECTIONS
    ) -> None:
        """Prepare a canary on ``bind`` (port chosen by the system at start)."""
        self.bind = bind
        self._read_timeout = read_timeout
        self._max_connections = max_connections
        self._open = 0
        self._server: asyncio.Server | None = None
        self._waiting: dict[str, asyncio.Event] = {}
        self.port = 0

    async def start(self) -> None:
        """Open the listener; ``port`` holds the port it got."""
        self._server = await asyncio.start_server(self._accept, self.bind, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def new_token(self) -> str:
        """Return a fresh random token and start waiting for it."""
        token = secrets.token_hex(_TOKEN_BYTES)
        self._waiting[token] = asyncio.Event()
        return token

    async def arrived(self, token: str, timeout: float) -> bool:
        """Return whether ``token`` reached the canary within ``timeout`` seconds."""
        event = self._waiting.get(token)
        if event is None:
            return False
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            return False
        finally:
            self._waiting.pop(token, None)
        return True

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read a token from a relayed connection and wake whoever waits for it."""
        if self._open >= self._max_connections:
            writer.close()
            return
        self._open += 1
        received = b""
        try:
            async with asyncio.timeout(self._read_timeout):
                while len(received) < _MAX_READ and not self._match(received):
                    chunk = await reader.read(_MAX_READ - len(received))
                    if not chunk:
                        break
                    received += chunk
        except (OSError, TimeoutError):
            pass
        finally:
            self._open -= 1
            writer.close()
        token = self._match(received)
        if token:
            self._waiting[token].set()

    def _match(self, received: bytes) -> str:
        """Return the awaited token contained in ``received``, or ""."""
        text = received.decode("ascii", errors="replace")
        return next((token for token in self._waiting if token in text), "")

    async def close(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
