"""Findings from rolecall's own active probes: a real scan of real servers on loopback."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult

from tests.findings_helpers import at, cli, findings
from tests.probe_helpers import RelayPolicy, mail_server, microsocks, process
from tests.zeek_helpers import write_tsv


def _no_credentials_work(*_args: Any) -> AuthResult:
    """An authenticator that refuses every login."""
    return AuthResult(success=False, handled=False)


def test_scan_raises_open_relay_plaintext_auth_anonymous_ftp_and_open_proxy(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    closed_policy = RelayPolicy(local_domain="corp.test")
    refusing = {"auth_require_tls": False, "authenticator": _no_credentials_work}
    ftp = [sys.executable, "-m", "pyftpdlib", "-p", "2121", "-d", str(tmp_path)]
    with (
        mail_server(at(49), 2525, RelayPolicy()),
        mail_server(at(50), 2525, closed_policy, **refusing),
        process([*ftp, "-i", at(51)], at(51), 2121),
        process([*ftp, "-i", at(52), "-u", "bob", "-P", "not-anonymous"], at(52), 2121),
        microsocks(at(53), 1080),
        microsocks(at(54), 1080, user="alice", password="secret"),
    ):
        cli(
            capsys, database, None, "scan", "subnet", "127.0.120.48/29", "--ports", "1080,2121,2525"
        )
    found = findings(capsys, database)
    assert found["open-relay", at(49)]["severity"] == "high"
    assert ("open-relay", at(50)) not in found  # refused the relay test: not an open relay
    assert "before TLS" in found["plaintext-auth", at(50)]["summary"]
    assert ("plaintext-auth", at(49)) not in found  # offers no AUTH at all
    assert ("anonymous-ftp", at(51)) in found
    assert ("anonymous-ftp", at(52)) not in found
    assert ("open-socks-proxy", at(53)) in found
    assert ("open-socks-proxy", at(54)) not in found  # demands a password
    assert found["open-relay", at(49)]["evidence"][0].startswith("observation:")


def test_a_probed_finding_holds_between_scans_and_resolves_when_a_rescan_contradicts_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    scan = ("scan", "subnet", f"{at(57)}/32", "--ports", "2525")
    with mail_server(at(57), 2525, RelayPolicy()) as relay:
        cli(capsys, database, None, *scan)
    assert findings(capsys, database)["open-relay", at(57)]["status"] == "open"
    # Zeek sees mail delivered to the relay three days later: the host is seen again, but
    # no probe looked, so the open relay is still open (a weekly scan's finding holds).
    later = f"{time.time() + 3 * 86400:.6f}"
    row = {"ts": later, "uid": "C1", "id.orig_h": at(58), "id.orig_p": "40000"}
    row |= {"id.resp_h": at(57), "id.resp_p": "2525", "proto": "tcp", "conn_state": "SF"}
    row |= {"orig_pkts": "5", "resp_pkts": "4", "orig_ip_bytes": "400", "resp_ip_bytes": "900"}
    row |= {"orig_bytes": "100", "resp_bytes": "600", "tunnel_parents": "(empty)"}
    log = write_tsv(tmp_path / "conn.log", "conn", [row])
    cli(capsys, database, None, "ingest", "zeek", str(log))
    assert findings(capsys, database)["open-relay", at(57)]["status"] == "open"
    # The same server, now refusing foreign recipients, scanned again.
    with mail_server(at(57), 2525, RelayPolicy(local_domain="corp.test")) as fixed:
        cli(capsys, database, None, *scan)
    assert findings(capsys, database)["open-relay", at(57)]["status"] == "resolved"
    assert "DATA" not in relay.log.commands + fixed.log.commands
