"""Findings from rolecall's own active probes: a real scan of real servers on loopback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult

from tests.findings_helpers import at, cli, findings
from tests.probe_helpers import MailServer, RelayPolicy, microsocks, process


def _no_credentials_work(*_args: Any) -> AuthResult:
    """An authenticator that refuses every login."""
    return AuthResult(success=False, handled=False)


def test_scan_raises_open_relay_plaintext_auth_anonymous_ftp_and_open_proxy(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_path: Path
) -> None:
    open_relay = MailServer(at(49), 2525, RelayPolicy())
    closed = MailServer(
        at(50),
        2525,
        RelayPolicy(local_domain="corp.test"),
        auth_require_tls=False,
        authenticator=_no_credentials_work,
    )
    ftp = [sys.executable, "-m", "pyftpdlib", "-p", "2121", "-d", str(tmp_path)]
    open_relay.start()
    closed.start()
    try:
        with (
            process([*ftp, "-i", at(51)], at(51), 2121),
            process([*ftp, "-i", at(52), "-u", "bob", "-P", "not-anonymous"], at(52), 2121),
            microsocks(at(53), 1080),
            microsocks(at(54), 1080, user="alice", password="secret"),
        ):
            cli(
                capsys,
                db_path,
                None,
                "scan",
                "subnet",
                "127.0.120.48/29",
                "--ports",
                "1080,2121,2525",
            )
    finally:
        open_relay.stop()
        closed.stop()
    found = findings(capsys, db_path)
    assert found["open-relay", at(49)]["severity"] == "high"
    assert ("open-relay", at(50)) not in found  # refused the relay test: not an open relay
    assert "before TLS" in found["plaintext-auth", at(50)]["summary"]
    assert ("plaintext-auth", at(49)) not in found  # offers no AUTH at all
    assert ("anonymous-ftp", at(51)) in found
    assert ("anonymous-ftp", at(52)) not in found
    assert ("open-socks-proxy", at(53)) in found
    assert ("open-socks-proxy", at(54)) not in found  # demands a password
    assert found["open-relay", at(49)]["evidence"][0].startswith("observation:")
