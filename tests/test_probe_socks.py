"""SOCKS probe against real proxies on loopback: microsocks (SOCKS5) and dante-server (SOCKS4/5)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from rolecall.probes.active.driver import run_probes
from tests.probe_helpers import (
    FAST,
    LoopbackGate,
    dante,
    dante_destinations,
    detail_of,
    microsocks,
    observed,
    roles_of,
    services,
)


def test_socks5_without_auth_relays_to_the_canary() -> None:
    """An open microsocks is socks5, open (relay verified), on a nonstandard port."""
    with microsocks("127.0.1.1", 11080):
        records = run_probes([("127.0.1.1", 11080)], LoopbackGate(), FAST)
    assert observed(records, 11080, "protocol") == ["socks5"]
    assert observed(records, 11080, "socks5-auth") == ["no-auth"]
    assert observed(records, 11080, "socks5-relay") == ["relayed to canary"]
    assert detail_of(records, 11080, "socks5-relay")["token_arrived"] is True
    assert roles_of(records, 11080) == {
        "socks-proxy",
        "socks5",
        "socks-proxy-open",
        "nonstandard-port",
    }
    assert [s.auth for s in services(records, 11080)] == ["none"]


def test_socks5_with_password_is_auth_and_never_open() -> None:
    """A microsocks demanding username/password is socks-proxy-auth and not open."""
    with microsocks("127.0.1.2", 11081, user="alice", password="s3cret"):
        records = run_probes([("127.0.1.2", 11081)], LoopbackGate(), FAST)
    assert observed(records, 11081, "protocol") == ["socks5"]
    assert observed(records, 11081, "socks5-auth") == ["username/password"]
    assert observed(records, 11081, "socks5-relay") == []
    roles = roles_of(records, 11081)
    assert roles == {"socks-proxy", "socks5", "socks-proxy-auth", "nonstandard-port"}
    assert "socks-proxy-open" not in roles
    assert [s.auth for s in services(records, 11081)] == ["username/password"]


def test_socks_on_its_standard_port_is_not_nonstandard() -> None:
    """Port 1080 is SOCKS's own port: no nonstandard-port role there."""
    with microsocks("127.0.1.3", 1080):
        records = run_probes([("127.0.1.3", 1080)], LoopbackGate(), FAST)
    assert roles_of(records, 1080) == {"socks-proxy", "socks5", "socks-proxy-open"}


def test_socks_on_8124_is_found_and_nonstandard() -> None:
    """A SOCKS5 proxy on 8124 (nmap would call it something else) is found and flagged."""
    with microsocks("127.0.1.4", 8124):
        records = run_probes(
            [("127.0.1.4", 8124)], LoopbackGate(), FAST, nmap_names={("127.0.1.4", 8124): "unknown"}
        )
    assert "nonstandard-port" in roles_of(records, 8124)
    assert "socks-proxy-open" in roles_of(records, 8124)


def _wait_for_destinations(log: Path, count: int) -> list[str]:
    """Return dante's logged destinations once ``count`` are there (or after 3 s)."""
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        found = dante_destinations(log)
        if len(found) >= count:
            return found
        time.sleep(0.05)
    return dante_destinations(log)


def test_dante_speaks_socks4_and_socks5_and_is_only_asked_for_the_canary(tmp_path: Path) -> None:
    """dante relays both versions; its own log shows it was asked for the canary only."""
    settings = dataclasses.replace(FAST, canary_bind="127.0.0.1")
    with dante(tmp_path, 11090) as log:
        records = run_probes([("127.0.0.1", 11090)], LoopbackGate(), settings)
        destinations = _wait_for_destinations(log, 2)
    assert sorted(observed(records, 11090, "protocol")) == ["socks4", "socks5"]
    assert observed(records, 11090, "socks4-relay") == ["relayed to canary"]
    assert observed(records, 11090, "socks5-relay") == ["relayed to canary"]
    canary = str(detail_of(records, 11090, "socks4-relay")["canary"])
    assert canary == detail_of(records, 11090, "socks5-relay")["canary"]
    assert canary.startswith("127.0.0.1:")
    assert len(destinations) == 2
    assert set(destinations) == {canary.replace(":", ".")}
    roles = roles_of(records, 11090)
    assert {"socks4", "socks5", "socks-proxy", "socks-proxy-open"} <= roles


def test_proxy_that_cannot_reach_the_canary_is_handshake_open_only(tmp_path: Path) -> None:
    """dante (IPv4 only) asked for an IPv6 canary: handshake-open, relay unverified, not open."""
    settings = dataclasses.replace(FAST, canary_bind="::1")
    with dante(tmp_path, 11091):
        records = run_probes([("127.0.0.1", 11091)], LoopbackGate(), settings)
    assert observed(records, 11091, "socks5-relay") == ["handshake-open, relay unverified"]
    detail = detail_of(records, 11091, "socks5-relay")
    assert detail["token_arrived"] is False
    assert detail["canary"] == f"::1:{str(detail['canary']).rsplit(':', 1)[1]}"
    assert "socks-proxy-open" not in roles_of(records, 11091)


def test_proxy_whose_rules_refuse_connect_is_socks_but_not_open(tmp_path: Path) -> None:
    """dante blocking CONNECT: SOCKS4 0x5B refused, SOCKS5 handshake-open only; never open."""
    settings = dataclasses.replace(FAST, canary_bind="127.0.0.1")
    with dante(tmp_path, 11092, refuse=True) as log:
        records = run_probes([("127.0.0.1", 11092)], LoopbackGate(), settings)
    assert observed(records, 11092, "socks4-relay") == ["refused"]
    assert detail_of(records, 11092, "socks4-relay")["reply_code"] == "0x5b"
    assert observed(records, 11092, "socks5-relay") == ["handshake-open, relay unverified"]
    assert detail_of(records, 11092, "socks5-relay")["reply_code"] != 0
    roles = roles_of(records, 11092)
    assert {"socks4", "socks5", "socks-proxy"} <= roles
    assert "socks-proxy-open" not in roles
    assert dante_destinations(log) == []
