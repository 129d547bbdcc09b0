"""open-http-proxy: an HTTP proxy that relays CONNECT without credentials."""

from __future__ import annotations

from rolecall.inventory.derivation.role_rules import RELAYED
from rolecall.inventory.findings import Raised
from rolecall.inventory.rules.base import Collector, Row, Rule, RuleContext

NAME = "open-http-proxy"
SEVERITY = "high"


def from_observation(ctx: RuleContext, row: Row, out: Collector) -> None:
    """rolecall's own probe had the proxy CONNECT to its canary without credentials."""
    if row.value != RELAYED:
        return
    out.raise_on_observation(
        NAME,
        SEVERITY,
        row,
        f"HTTP proxy {row.address} port {row.port} relayed rolecall's CONNECT test"
        " without asking for credentials.",
    )


def from_connect(ctx: RuleContext, row: Row, out: Collector) -> None:
    """A captured CONNECT the proxy granted (2xx) to a client that gave no credentials."""
    if not 200 <= row.status < 300 or row.user:
        return
    out.raise_(
        Raised(
            NAME,
            row.proxy,
            SEVERITY,
            f"HTTP proxy {row.proxy} port {row.proxy_port} opened a tunnel for {row.client}"
            f" to {row.request_host} port {row.request_port} without credentials.",
            row.ts,
            row.ts,
            [f"connect:{row.id}"],
        )
    )


RULE = Rule(
    NAME,
    SEVERITY,
    observation_kinds=frozenset({"http-proxy-relay"}),
    observation=from_observation,
    connect=from_connect,
)
