"""What a proxy's tunnel carries once it is open, read by the parser its first bytes call for.

SOCKS and HTTP CONNECT both hand the rest of their stream here: the context names
the real client as client, the requested target as server and the proxy as
``via_proxy``. Bytes nothing recognises make the tunnel opaque: they are dropped.
"""

from __future__ import annotations

from rolecall.probes.passive.pcap.stream import (
    ParserFactory,
    PcapSettings,
    StreamContext,
    StreamParser,
    detect,
)
from rolecall.probes.records import Item


class Tunnel:
    """The parser of an opened tunnel's content, chosen by content on its first bytes."""

    def __init__(
        self,
        ctx: StreamContext,
        settings: PcapSettings,
        factory: ParserFactory,
        opaque: bool = False,
    ) -> None:
        """An open tunnel; ``opaque`` when bytes of it were already lost."""
        self.ctx = ctx
        self.settings = settings
        self.factory = factory
        self.inner: StreamParser | None = None
        self.opaque = opaque

    def feed(self, from_client: bool, data: bytes, ts: float) -> list[Item]:
        """Hand tunnelled bytes to the parser of whatever the tunnel turns out to carry."""
        if self.opaque:
            return []
        if self.inner is None:
            kind = detect(from_client, data)
            parser = self.factory(kind, self.ctx, self.settings) if kind else None
            if parser is None:
                if from_client:
                    self.opaque = True
                return []
            self.inner = parser
        out = self.inner.feed(from_client, data, ts)
        if self.inner.done:
            self.opaque = True
        return out

    def feed_held(self, client_bytes: bytes, server_bytes: bytes, ts: float) -> list[Item]:
        """Bytes that came with the handshake, the client's first, handed on as tunnel bytes."""
        out: list[Item] = []
        if client_bytes:
            out += self.feed(True, client_bytes, ts)
        if server_bytes:
            out += self.feed(False, server_bytes, ts)
        return out

    def gap(self, from_client: bool, size: int, ts: float) -> list[Item]:
        """Missing bytes: the content's parser resynchronises, if it is still reading."""
        if self.inner is not None and not self.inner.done:
            return self.inner.gap(from_client, size, ts)
        return []

    def finish(self, ts: float) -> list[Item]:
        """The tunnel ended: whatever its content's parser still holds."""
        inner, self.inner = self.inner, None
        return inner.finish(ts) if inner is not None else []
