"""Which roles one observation supports: a small, pure rule table (no database).

A rule matches an observation's ``kind`` and ``value``; a few rules also look
at its ``port``. Evidence that does not support a role never yields it: a
SOCKS or HTTP proxy is "open" only when a relay to rolecall's canary was verified,
so a proxy demanding a password, or one whose relay could not be verified, is not.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Final

from rolecall.probes.records import Observation

ROLES: Final = (
    "socks-proxy",
    "socks4",
    "socks5",
    "socks-proxy-open",
    "socks-proxy-auth",
    "http-proxy",
    "http-proxy-open",
    "http-proxy-auth",
    "nonstandard-port",
    "smtp-server",
    "smtp-open-relay",
    "smtp-submission",
    "smtp-auth-required",
    "web-server",
    "https-server",
    "dns-server",
    "ssh-server",
    "ftp-server",
    "ftp-anonymous",
    "pop3-server",
    "imap-server",
    "smtp-client",
    "socks-client",
    "dns-client",
    "web-client",
    "imap-client",
    "pop3-client",
    "workstation",
)
"""The whole role vocabulary of the contract (docs/contract.md)."""

STANDARD_SOCKS_PORTS: Final = frozenset({1080})
"""SOCKS's IANA port. Tor's 9050/9150 are not in it on purpose: a SOCKS proxy there is a Tor
client, itself worth a look on an inside host, so it counts as a nonstandard port."""

SUBMISSION_PORTS: Final = frozenset({587, 465})
"""Message submission (RFC 6409) and submission over implicit TLS (RFC 8314). AUTH offered
on any other port that speaks TLS from the first byte is submission too: MTAs relaying to
each other never use implicit TLS."""

RELAYED: Final = "relayed to canary"

_BY_VALUE: Final[dict[tuple[str, str], tuple[str, ...]]] = {
    ("protocol", "socks5"): ("socks-proxy", "socks5"),
    ("protocol", "socks4"): ("socks-proxy", "socks4"),
    ("socks5-auth", "username/password"): ("socks-proxy-auth",),
    ("socks5-relay", RELAYED): ("socks-proxy-open",),
    ("socks4-relay", RELAYED): ("socks-proxy-open",),
    ("protocol", "http-proxy"): ("http-proxy",),
    ("http-proxy-relay", RELAYED): ("http-proxy-open",),
    ("protocol", "smtp"): ("smtp-server",),
    ("smtp-relay", "open-relay"): ("smtp-open-relay",),
    ("smtp-relay", "auth-required"): ("smtp-auth-required",),
    ("protocol", "http"): ("web-server",),
    ("protocol", "https"): ("web-server", "https-server"),
    ("protocol", "dns"): ("dns-server",),
    ("protocol", "ssh"): ("ssh-server",),
    ("protocol", "ftp"): ("ftp-server",),
    ("ftp-anonymous", "allowed"): ("ftp-anonymous",),
    ("protocol", "pop3"): ("pop3-server",),
    ("protocol", "imap"): ("imap-server",),
}
"""Roles an observation supports by its kind and value alone."""

_BY_PORT: Final[tuple[tuple[str, Callable[[Observation], bool], tuple[str, ...]], ...]] = (
    (
        "protocol",
        lambda obs: obs.value in ("socks4", "socks5") and obs.port not in STANDARD_SOCKS_PORTS,
        ("nonstandard-port",),
    ),
    # Any challenge: the value is the proxy's own Proxy-Authenticate text.
    ("http-proxy-auth", lambda obs: bool(obs.value), ("http-proxy-auth",)),
    (
        "smtp-auth",
        lambda obs: obs.port in SUBMISSION_PORTS or _implicit_tls(obs),
        ("smtp-submission",),
    ),
)
"""Roles that depend on more than kind and value (the port, the detail): (kind, condition,
roles)."""

_BY_KIND: Final[dict[str, tuple[str, ...]]] = {
    "dns-query": ("dns-client",),
    "http-host": ("web-client",),
    "tls-sni": ("web-client",),
}
"""Client roles an observation supports whatever its value (the host asked for a name)."""

VALUE_KINDS: Final = frozenset({kind for kind, _ in _BY_VALUE} | {kind for kind, _, _ in _BY_PORT})
"""Observation kinds whose roles depend on the value or port: read row by row."""

ANY_VALUE_KINDS: Final = frozenset(_BY_KIND)
"""Observation kinds whose roles depend on the kind alone: aggregated per host."""

CLIENT_ROLES: Final = frozenset(
    {"smtp-client", "socks-client", "dns-client", "web-client", "imap-client", "pop3-client"}
)
"""Roles that show a host acting as a client (reading mail is enough to be a workstation)."""

MAIL_SERVER_ROLES: Final = frozenset(
    {"smtp-server", "smtp-open-relay", "smtp-submission", "smtp-auth-required"}
)
"""Roles of a host that handles mail as a server."""

NON_MAIL_SERVER_ROLES: Final = frozenset(
    {
        "web-server",
        "https-server",
        "dns-server",
        "ftp-server",
        "ssh-server",
        "pop3-server",
        "imap-server",
        "socks-proxy",
        "http-proxy",
    }
)
"""Server roles that give a host no reason to send mail (the default policy)."""


def _implicit_tls(obs: Observation) -> bool:
    """Return whether a probe saw this SMTP port speak TLS from the first byte (RFC 8314)."""
    try:
        detail = json.loads(obs.detail) if obs.detail else {}
    except ValueError:
        return False
    return isinstance(detail, dict) and detail.get("implicit_tls") is True


def roles_from_observation(obs: Observation) -> tuple[str, ...]:
    """Return the roles (sorted, no repeats) that this one observation supports."""
    roles = set(_BY_VALUE.get((obs.kind, obs.value), ()))
    roles.update(_BY_KIND.get(obs.kind, ()))
    for kind, condition, extra in _BY_PORT:
        if obs.kind == kind and condition(obs):
            roles.update(extra)
    return tuple(sorted(roles))


def roles_of_kind(kind: str) -> tuple[str, ...]:
    """The roles any observation of a kind supports, whatever its value."""
    return _BY_KIND.get(kind, ())
