"""open-socks-proxy: a SOCKS proxy that relays without credentials."""

from __future__ import annotations

from rolecall.inventory.derivation.role_rules import RELAYED
from rolecall.inventory.findings import Raised
from rolecall.inventory.rules.base import Collector, Row, Rule, RuleContext

NAME = "open-socks-proxy"
SEVERITY = "high"
SUCCEEDED = frozenset({"succeeded", "granted"})
"""Zeek's socks.log status for a relayed request (SOCKS5 and SOCKS4)."""


def from_observation(ctx: RuleContext, row: Row, out: Collector) -> None:
    """rolecall's own probe had the proxy connect to its canary without a password."""
    if row.value != RELAYED:
        return
    out.raise_on_observation(
        NAME,
        SEVERITY,
        row,
        f"SOCKS proxy {row.address} port {row.port} relayed rolecall's test connection"
        " without asking for credentials.",
    )


def from_socks(ctx: RuleContext, row: Row, out: Collector) -> None:
    """A captured request granted with no credentials (SOCKS4 has none; SOCKS5 gave no user)."""
    if row.status not in SUCCEEDED or (row.version == 5 and row.user):
        return
    target = row.request_name or row.request_host
    out.raise_(
        Raised(
            NAME,
            row.proxy,
            SEVERITY,
            f"SOCKS proxy {row.proxy} port {row.proxy_port} relayed {row.client}'s connection"
            f" to {target} port {row.request_port} without credentials.",
            row.ts,
            row.ts,
            [f"socks:{row.id}"],
        )
    )


RULE = Rule(
    NAME,
    SEVERITY,
    observation_kinds=frozenset({"socks5-relay", "socks4-relay"}),
    observation=from_observation,
    socks=from_socks,
)
