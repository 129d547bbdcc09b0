"""The role rules: which roles one probe observation supports, and which it never does."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rolecall.inventory.derivation.role_rules import ROLES, roles_from_observation
from rolecall.probes.records import Observation

SPEC_ROLES = [
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
]


def obs(kind: str, value: str, port: int = 0) -> Observation:
    """Return a probe observation of ``kind``/``value`` on ``port``."""
    return Observation("127.0.9.1", kind, "probe", datetime.now(UTC), port, "tcp", value)


def test_vocabulary_is_the_specs() -> None:
    """ROLES holds exactly the SPEC's role names."""
    assert list(ROLES) == SPEC_ROLES


@pytest.mark.parametrize(
    ("kind", "value", "port", "roles"),
    [
        ("protocol", "socks5", 1080, ("socks-proxy", "socks5")),
        ("protocol", "socks5", 9050, ("nonstandard-port", "socks-proxy", "socks5")),
        ("protocol", "socks4", 8124, ("nonstandard-port", "socks-proxy", "socks4")),
        ("socks5-auth", "username/password", 1080, ("socks-proxy-auth",)),
        ("socks5-auth", "no-auth", 1080, ()),
        ("socks5-relay", "relayed to canary", 1080, ("socks-proxy-open",)),
        ("socks4-relay", "relayed to canary", 1080, ("socks-proxy-open",)),
        ("socks5-relay", "handshake-open, relay unverified", 1080, ()),
        ("socks4-relay", "refused", 1080, ()),
        ("protocol", "smtp", 25, ("smtp-server",)),
        ("smtp-relay", "open-relay", 25, ("smtp-open-relay",)),
        ("smtp-relay", "relay-refused", 25, ()),
        ("smtp-relay", "inconclusive", 25, ()),
        ("smtp-relay", "auth-required", 587, ("smtp-auth-required",)),
        ("smtp-auth", "LOGIN PLAIN", 587, ("smtp-submission",)),
        ("smtp-auth", "LOGIN PLAIN", 465, ("smtp-submission",)),
        ("smtp-auth", "LOGIN PLAIN", 25, ()),
        ("protocol", "http", 80, ("web-server",)),
        ("protocol", "https", 443, ("https-server", "web-server")),
        ("protocol", "tls", 443, ()),
        ("protocol", "dns", 53, ("dns-server",)),
        ("protocol", "ssh", 22, ("ssh-server",)),
        ("protocol", "ftp", 21, ("ftp-server",)),
        ("ftp-anonymous", "allowed", 21, ("ftp-anonymous",)),
        ("ftp-anonymous", "refused", 21, ()),
        ("protocol", "pop3", 110, ("pop3-server",)),
        ("protocol", "imap", 143, ("imap-server",)),
        ("unclassified", "unrecognised reply", 4444, ()),
        ("port-open", "socks5", 1080, ()),
    ],
)
def test_rule_table(kind: str, value: str, port: int, roles: tuple[str, ...]) -> None:
    """Each observation supports exactly the roles its evidence justifies."""
    assert roles_from_observation(obs(kind, value, port)) == roles


@given(
    kind=st.sampled_from(["protocol", "socks5-auth", "socks5-relay", "smtp-relay", "smtp-auth"]),
    value=st.text(max_size=30),
    port=st.integers(min_value=0, max_value=65535),
)
def test_roles_are_always_from_the_vocabulary(kind: str, value: str, port: int) -> None:
    """Whatever an observation holds, only SPEC role names come out, sorted."""
    roles = roles_from_observation(obs(kind, value, port))
    assert set(roles) <= set(ROLES)
    assert list(roles) == sorted(roles)
    assert "socks-proxy-open" not in roles


def test_http_proxy_is_open_only_when_the_canary_got_the_token() -> None:
    """Only a verified relay is http-proxy-open; any 407 challenge is http-proxy-auth."""
    assert roles_from_observation(obs("protocol", "http-proxy", 3128)) == ("http-proxy",)
    open_relay = obs("http-proxy-relay", "relayed to canary", 3128)
    assert roles_from_observation(open_relay) == ("http-proxy-open",)
    for value in ("200 without relay", "refused", "inconclusive"):
        assert roles_from_observation(obs("http-proxy-relay", value, 3128)) == ()
    challenge = obs("http-proxy-auth", 'Digest realm="x"', 8080)
    assert roles_from_observation(challenge) == ("http-proxy-auth",)
