"""mail-via-proxy: SMTP carried through a SOCKS proxy."""

from __future__ import annotations

from rolecall.inventory.rules.base import Collector, Row, Rule, RuleContext

NAME = "mail-via-proxy"
SEVERITY = "high"


def from_smtp(ctx: RuleContext, row: Row, out: Collector) -> None:
    """A mail transaction seen inside a SOCKS tunnel: the client and the proxy are both named."""
    if not row.via_proxy:
        return
    out.raise_on_smtp(
        NAME,
        SEVERITY,
        row,
        f"{row.client} sent SMTP to {row.server} port {row.server_port}"
        f" through the SOCKS proxy {row.via_proxy}.",
    )


RULE = Rule(NAME, SEVERITY, smtp=from_smtp)
