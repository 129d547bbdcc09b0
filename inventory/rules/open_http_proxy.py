"""open-http-proxy: an HTTP proxy that relays CONNECT without credentials."""

from __future__ import annotations

from typing import Final

from rolecall.inventory.derivation.role_rules import RELAYED
from rolecall.inventory.findings import Raised
from rolecall.inventory.rules.base import Collector, Row, Rule, RuleContext

NAME = "open-http-proxy"
SEVERITY = "high"
MAIL_PORTS: Final = frozenset({25, 465, 587, 2525})
"""Ports a tunnel opened without credentials must not reach (SMTP, submission)."""


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
    """A captured CONNECT granted (2xx) without credentials, to the world or to a mail port.

    An inside client using the proxy without credentials is an ordinary corporate
    explicit proxy (roles only). The finding is raised when an outside client was
    let through an inside proxy (open to the world), or when the tunnel goes to a
    mail port (mail carried without credentials: the spam case).
    """
    if not 200 <= row.status < 300 or row.user:
        return
    to_mail = row.request_port in MAIL_PORTS
    from_world = ctx.is_inside(row.proxy) and not ctx.is_inside(row.client)
    if not (to_mail or from_world):
        return
    why = "a mail port" if to_mail else f"{row.client} is outside the scope"
    out.raise_(
        Raised(
            NAME,
            row.proxy,
            SEVERITY,
            f"HTTP proxy {row.proxy} port {row.proxy_port} opened a tunnel for {row.client}"
            f" to {row.request_host} port {row.request_port} without credentials ({why}).",
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
