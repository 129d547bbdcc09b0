"""`scan subnet` end to end: nmap finds the ports, the probes classify them, roles land."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli
from tests.probe_helpers import RelayPolicy, mail_server, microsocks


def _roles(capsys: pytest.CaptureFixture[str], db: Path) -> dict[str, set[str]]:
    """Roles per address from the inventory export."""
    result = run_cli(capsys, "--db", str(db), "export", "inventory")
    assert result.code == 0, result.err
    rows = csv.DictReader(io.StringIO(result.out))
    return {row["address"]: set(filter(None, row["roles"].split(";"))) for row in rows}


def test_scan_with_probes_tags_roles_and_never_sends_data(
    capsys: pytest.CaptureFixture[str], db_path: Path
) -> None:
    with (
        mail_server("127.0.79.2", 2525, RelayPolicy()) as relay,
        mail_server("127.0.79.3", 2525, RelayPolicy(local_domain="corp.test")) as refusing,
        microsocks("127.0.79.4", 8124),
        microsocks("127.0.79.5", 1080, user="alice", password="secret"),
    ):
        args = ("--db", str(db_path), "scan", "subnet", "127.0.79.0/29")
        result = run_cli(capsys, *args, "--ports", "1080,2525,8124")
    assert result.code == 0, result.err
    assert "DATA" not in relay.log.commands
    assert "DATA" not in refusing.log.commands
    assert "RCPT" in refusing.log.commands

    roles = _roles(capsys, db_path)
    assert {"smtp-server", "smtp-open-relay"} <= roles["127.0.79.2"]
    assert "smtp-server" in roles["127.0.79.3"]
    assert "smtp-open-relay" not in roles["127.0.79.3"]
    assert {"socks-proxy", "socks5", "socks-proxy-open", "nonstandard-port"} <= roles["127.0.79.4"]
    assert {"socks-proxy", "socks5", "socks-proxy-auth"} <= roles["127.0.79.5"]
    assert "socks-proxy-open" not in roles["127.0.79.5"]

    # Deriving again (a rescan without probes) keeps the same roles: derivation is idempotent.
    again = run_cli(
        capsys, "--db", str(db_path), "scan", "subnet", "127.0.79.6", "--probes", "none"
    )
    assert again.code == 0, again.err
    assert _roles(capsys, db_path) == roles

    services = run_cli(capsys, "--db", str(db_path), "export", "services", "--format", "json")
    by_port = {
        (row["address"], row["port"], row["source"]): row for row in json.loads(services.out)
    }
    assert by_port[("127.0.79.5", 1080, "probe")]["auth"] == "username/password"


def test_unknown_probe_name_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], db_path: Path
) -> None:
    result = run_cli(capsys, "--db", str(db_path), "scan", "subnet", "127.0.79.7", "--probes", "x")
    assert result.code == 2
    assert result.err.startswith("rolecall: unknown probe name(s) x")
