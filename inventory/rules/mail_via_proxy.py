"""mail-via-proxy: SMTP carried through a proxy (SOCKS or HTTP CONNECT); client and proxy named.

The client's finding rests on the transaction read inside its tunnel (``via_proxy``);
the proxy's says it relays mail for the client, and rests on that transaction and on the
proxy's own copy of the message, read on its connection to the server (``relayed_for``).
"""

from __future__ import annotations

from sqlalchemy import Connection, select

from rolecall.inventory.findings import Raised
from rolecall.inventory.rules.base import Collector, Row, Rule, RuleContext
from rolecall.inventory.tables import CONNECT_TABLE, SOCKS_TABLE

NAME = "mail-via-proxy"
SEVERITY = "high"


def proxy_kind(ctx: RuleContext, client: str, proxy: str) -> str:
    """How the client asked the proxy for its tunnel, as the store recorded it, in words."""
    # Looked up once per pair and derivation: a busy tunnel carries thousands of messages.
    key = (NAME, client, proxy)
    kind = ctx.answers.get(key)
    if kind is None:
        kind = ctx.answers[key] = _asked_kind(ctx.connection, client, proxy)
    return kind


def _asked_kind(connection: Connection, client: str, proxy: str) -> str:
    """How the client asked the proxy for a tunnel, read in the SOCKS and CONNECT tables."""
    for table, kind in ((SOCKS_TABLE, "SOCKS proxy"), (CONNECT_TABLE, "HTTP proxy (CONNECT)")):
        asked = select(table.c.id).where(table.c.client == client, table.c.proxy == proxy)
        if connection.execute(asked.limit(1)).first() is not None:
            return kind
    return "proxy"


def _raise(out: Collector, address: str, row: Row, summary: str) -> None:
    """Raise the finding on one of the two hosts, resting on one mail transaction."""
    out.raise_(Raised(NAME, address, SEVERITY, summary, row.ts, row.ts, [f"smtp:{row.id}"]))


def from_smtp(ctx: RuleContext, row: Row, out: Collector) -> None:
    """Mail through a proxy: the client's tunnelled copy names both; the proxy's copy names it."""
    if row.via_proxy:
        client, proxy = row.client, row.via_proxy
        kind = proxy_kind(ctx, client, proxy)
        target = f"{row.server} port {row.server_port}"
        _raise(out, client, row, f"{client} sent SMTP to {target} through the {kind} {proxy}.")
        _raise(out, proxy, row, f"The {kind} {proxy} relays mail for {client} to {target}.")
    elif row.relayed_for:
        proxy, client = row.client, row.relayed_for
        kind = proxy_kind(ctx, client, proxy)
        _raise(
            out,
            proxy,
            row,
            f"The {kind} {proxy} relays mail for {client}: its own connection to"
            f" {row.server} port {row.server_port} carried the message {client} sent"
            " through it.",
        )


RULE = Rule(NAME, SEVERITY, smtp=from_smtp, smtp_reads_tunnels=True)
