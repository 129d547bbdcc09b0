"""`rolecall scan subnet` end to end with real nmap against listeners the test opened."""

from __future__ import annotations

import csv
import io
import os
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli_helpers import Listener, run_cli

OPEN = {("127.0.77.1", 2525), ("127.0.77.2", 8080), ("127.0.77.3", 1080), ("127.0.77.3", 8124)}
PORTS = "22,1080,2525,8080,8124,9050"


def _inventory(capsys: pytest.CaptureFixture[str], db: Path) -> dict[str, dict[str, str]]:
    """The inventory export as rows by address."""
    result = run_cli(capsys, "--db", str(db), "export", "inventory", "--format", "csv")
    assert result.code == 0, result.err
    return {row["address"]: row for row in csv.DictReader(io.StringIO(result.out))}


def test_scan_finds_exactly_the_open_ports(
    capsys: pytest.CaptureFixture[str],
    db_path: Path,
    listeners: Callable[[str, int], Listener],
) -> None:
    for address, port in OPEN:
        listeners(address, port)
    result = run_cli(
        capsys, "--db", str(db_path), "scan", "subnet", "127.0.77.0/29", "--ports", PORTS
    )
    assert result.code == 0, result.err
    assert "4 open ports" in result.out
    assert "this run's scope is the command-line targets 127.0.77.0/29" in result.err

    rows = _inventory(capsys, db_path)
    open_ports = {addr: row["open_ports"] for addr, row in rows.items() if row["open_ports"]}
    assert open_ports == {
        "127.0.77.1": "2525/tcp",
        "127.0.77.2": "8080/tcp",
        "127.0.77.3": "1080/tcp;8124/tcp",
    }
    # Hosts with open ports were probed too; the others only seen by the scan.
    assert {
        addr: row["sources"] for addr, row in rows.items() if addr in open_ports
    } == dict.fromkeys(open_ports, "probe;scan")
    assert {row["sources"] for addr, row in rows.items() if addr not in open_ports} == {"scan"}

    services = run_cli(capsys, "--db", str(db_path), "export", "services", "--format", "csv")
    found = {(r["address"], int(r["port"])) for r in csv.DictReader(io.StringIO(services.out))}
    assert found == OPEN


def test_rescan_counts_instead_of_duplicating(
    capsys: pytest.CaptureFixture[str],
    db_path: Path,
    listeners: Callable[[str, int], Listener],
) -> None:
    listeners("127.0.77.9", 2525)
    for _ in range(2):
        result = run_cli(
            capsys, "--db", str(db_path), "scan", "subnet", "127.0.77.9", "--ports", "2525"
        )
        assert result.code == 0, result.err
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute(
            "SELECT count, first_seen < last_seen OR first_seen = last_seen FROM observation"
            " WHERE kind = 'port-open'"
        ).fetchall()
        assert rows == [(2, 1)]
        assert conn.execute("SELECT COUNT(*) FROM service").fetchone() == (1,)
        assert conn.execute("SELECT COUNT(*) FROM asset").fetchone() == (1,)
        runs = conn.execute("SELECT kind, status FROM run ORDER BY id").fetchall()
        assert runs == [("scan", "ok"), ("scan", "ok")]


def _recording_nmap(tmp_path: Path) -> tuple[Path, Path]:
    """A wrapper around the real nmap that leaves a mark each time it is started."""
    marker = tmp_path / "nmap-was-run"
    wrapper = tmp_path / "nmap-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {marker}\nexec nmap "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return wrapper, marker


def test_target_outside_scope_is_refused_before_any_packet(
    capsys: pytest.CaptureFixture[str],
    db_path: Path,
    tmp_path: Path,
    listeners: Callable[[str, int], Listener],
) -> None:
    wrapper, marker = _recording_nmap(tmp_path)
    config = tmp_path / "rolecall.toml"
    config.write_text(
        '[scope]\nallow = ["127.0.78.0/24"]\nexclude = ["127.0.78.8/29"]\n'
        f'[scan]\nnmap = "{wrapper}"\n'
    )
    outside = listeners("127.0.79.1", 2525)
    excluded = listeners("127.0.78.9", 2525)
    base = ("--config", str(config), "--db", str(db_path), "scan", "subnet")

    result = run_cli(capsys, *base, "127.0.79.0/29", "--ports", "2525")
    assert result.code == 2
    assert result.err.strip() == (
        "rolecall: target 127.0.79.0/29 is outside the configured scope"
        " (127.0.79.0/29 is not allowed)"
    )
    assert "Traceback" not in result.err
    assert not marker.exists()

    # Partly outside is outside too.
    result = run_cli(capsys, *base, "127.0.78.0/23", "--ports", "2525")
    assert result.code == 2
    assert not marker.exists()

    # Excluded addresses inside an allowed target are left out of the scan.
    inside = listeners("127.0.78.2", 2525)
    result = run_cli(capsys, *base, "127.0.78.0/28", "--ports", "2525")
    assert result.code == 0, result.err
    assert marker.exists()
    assert "127.0.78.0/29" in marker.read_text()
    assert "127.0.78.8" not in marker.read_text()
    assert inside.accepted >= 1
    assert outside.accepted == 0
    assert excluded.accepted == 0


def test_without_a_configured_scope_only_this_machine_may_be_scanned(
    capsys: pytest.CaptureFixture[str], db_path: Path, tmp_path: Path
) -> None:
    wrapper, marker = _recording_nmap(tmp_path)
    config = tmp_path / "rolecall.toml"
    config.write_text(f'[scan]\nnmap = "{wrapper}"\n')
    base = ("--config", str(config), "--db", str(db_path), "scan", "subnet")
    for target in ("192.0.2.0/24", "127.0.79.0/29 198.51.100.7"):
        result = run_cli(capsys, *base, *target.split(), "--ports", "2525")
        assert result.code == 2
        assert "not on this machine and no scope is configured" in result.err
        assert "[scope] allow" in result.err
        assert not marker.exists()
    result = run_cli(capsys, *base, "127.0.79.0/30", "--ports", "2525")
    assert result.code == 0, result.err
    assert "scope: none configured" in result.err
    assert marker.exists()


@pytest.mark.parametrize(
    "target",
    ["--script=x", "-iL /etc/passwd", "127.0.0.1 --script x", "127.0.0.0/33", "localhost", "10/8"],
)
def test_target_that_is_not_a_network_is_refused(
    capsys: pytest.CaptureFixture[str], db_path: Path, tmp_path: Path, target: str
) -> None:
    wrapper, marker = _recording_nmap(tmp_path)
    config = tmp_path / "rolecall.toml"
    config.write_text(f'[scan]\nnmap = "{wrapper}"\n')
    result = run_cli(
        capsys, "--config", str(config), "--db", str(db_path), "scan", "subnet", "--", target
    )
    assert result.code == 2
    assert result.err.startswith(f"rolecall: target {target!r} is not an address or CIDR network")
    assert not marker.exists()


def test_option_smuggled_as_target_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], db_path: Path
) -> None:
    result = run_cli(capsys, "--db", str(db_path), "scan", "subnet", "-iL", "/etc/passwd")
    assert result.code == 2
    assert "No such option" in result.err


def test_missing_nmap_says_how_to_install_it(
    capsys: pytest.CaptureFixture[str], db_path: Path, tmp_path: Path
) -> None:
    config = tmp_path / "rolecall.toml"
    config.write_text('[scan]\nnmap = "nmap-not-installed-here"\n')
    result = run_cli(
        capsys, "--config", str(config), "--db", str(db_path), "scan", "subnet", "127.0.0.1"
    )
    assert result.code == 1
    assert "apt-get install nmap" in result.err
    assert len(result.err.strip().splitlines()) == 2  # the scope note and the error


def test_scan_from_a_directory_with_rolecall_toml(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    listeners: Callable[[str, int], Listener],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listeners("127.0.77.17", 2525)
    (tmp_path / "rolecall.toml").write_text(
        '[database]\nurl = "here.db"\n[scope]\nallow = ["127.0.77.16/28"]\n[scan]\nports = "2525"\n'
    )
    monkeypatch.chdir(tmp_path)
    result = run_cli(capsys, "scan", "subnet", "127.0.77.16/30")
    assert result.code == 0, result.err
    assert "scope: none configured" not in result.err
    assert (tmp_path / "here.db").exists()
    assert os.access(tmp_path / "here.db", os.R_OK)
