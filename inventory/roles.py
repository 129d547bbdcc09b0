"""Which roles one observation supports: a small, pure rule table (no database).

A rule matches an observation's ``kind`` and ``value``; a few rules also look
at its ``port``. Evidence that does not support a role never yields it: a
SOCKS proxy is "open" only when a relay to rolecall's canary was verified, so a
proxy demanding a password, or one whose relay could not be verified, is not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from probes.records import Observation

ROLES: Final = (
    "socks-proxy",
    "socks4",
    "socks5",
    "socks-proxy-open",
    "socks-proxy-auth",
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
    "workstation",
)
"""The whole role vocabulary of the SPEC."""

STANDARD_SOCKS_PORTS: Final = frozenset({1080})
"""SOCKS's IANA port. Tor's 9050/9150 are not in it on purpose: a SOCKS proxy there is a Tor
client, itself worth a look on an inside host, so it counts as a nonstandard port."""

SUBMISSION_PORTS: Final = frozenset({587, 465})
"""Message submission (RFC 6409) and submission over implicit TLS (RFC 8314)."""

RELAYED: Final = "relayed to canary"

_BY_VALUE: Final[dict[tuple[str, str], tuple[str, ...]]] = {
    ("protocol", "socks5"): ("socks-proxy", "socks5"),
    ("protocol", "socks4"): ("socks-proxy", "socks4"),
    ("socks5-auth", "username/password"): ("socks-proxy-auth",),
    ("socks5-relay", RELAYED): ("socks-proxy-open",),
    ("socks4-relay", RELAYED): ("socks-proxy-open",),
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
    ("smtp-auth", lambda obs: obs.port in SUBMISSION_PORTS, ("smtp-submission",)),
)
"""Roles that also depend on the port: (kind, condition, roles)."""


def roles_from_observation(obs: Observation) -> tuple[str, ...]:
    """Return the roles (sorted, no repeats) that this one observation supports."""
    roles = set(_BY_VALUE.get((obs.kind, obs.value), ()))
    for kind, condition, extra in _BY_PORT:
        if obs.kind == kind and condition(obs):
            roles.update(extra)
    return tuple(sorted(roles))
