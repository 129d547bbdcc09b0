"""IPv6 end to end: scans and probes over ::1 and addresses the test put on lo, scope, groups.

Addresses other than ::1 exist only on the loopback of the suite's own network namespace
(tests/own_network.py): nothing here can reach another machine.
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli
from tests.daemon_helpers import daemon, event_named, rolecall
from tests.nmap_samples import HEAD, TAIL
from tests.probe_helpers import microsocks
from tests.zeek_helpers import write_tsv

PREFIX = "fd00:e6:1::/64"
KNOWN = "fd00:e6:1::5"
KNOWN_EXPANDED = "FD00:00E6:0001:0000:0000:0000:0000:0005"
EXCLUDED = "fd00:e6:1::6"
ELSEWHERE = "fd00:e6:2::7"


def _own_network() -> bool:
    """Whether the suite runs in its own network namespace (root, not turned off)."""
    return os.geteuid() == 0 and os.environ.get("ROLECALL_TEST_OWN_NETWORK") != "0"


@pytest.fixture
def on_loopback() -> Iterator[str]:
    """KNOWN added to lo of the suite's own namespace for the test, removed after."""
    if not _own_network():
        pytest.skip("needs the suite's own network namespace (root) to add an address to lo")
    address = f"{KNOWN}/128"
    subprocess.run(["ip", "-6", "addr", "add", address, "dev", "lo", "nodad"], check=True)
    try:
        yield KNOWN
    finally:
        subprocess.run(["ip", "-6", "addr", "del", address, "dev", "lo"], check=True)


@pytest.fixture
def ipv6_listener() -> Iterator[tuple[str, int]]:
    """A TCP listener on ::1 (nmap's connect scan completes on the backlog)."""
    with socket.create_server(("::1", 0), family=socket.AF_INET6) as server:
        yield "::1", int(server.getsockname()[1])


def _free_port(address: str) -> int:
    """A TCP port free on an IPv6 address."""
    with socket.socket(socket.AF_INET6) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def _recording_nmap(tmp_path: Path) -> tuple[Path, Path]:
    """A wrapper around the real nmap that writes its arguments, one line per run."""
    marker = tmp_path / "nmap-runs"
    wrapper = tmp_path / "nmap-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {marker}\nexec nmap "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return wrapper, marker


def _host(address: str, port: int | None = None) -> str:
    """One <host> of nmap XML given as an IPv6 address, with an open port if given."""
    ports = (
        f'<port protocol="tcp" portid="{port}"><state state="open" reason="syn-ack"/>'
        '<service name="smtp" method="table" conf="3"/></port>'
        if port
        else ""
    )
    return (
        '<host starttime="1795485410" endtime="1795485411"><status state="up" reason="syn-ack"/>'
        f'<address addr="{address}" addrtype="ipv6"/><hostnames/><ports>{ports}</ports></host>\n'
    )


def _known_hosts(path: Path) -> Path:
    """nmap XML naming KNOWN (written expanded, in capitals), EXCLUDED and ELSEWHERE."""
    hosts = _host(KNOWN_EXPANDED, 2525) + _host(EXCLUDED) + _host(ELSEWHERE)
    path.write_text(HEAD + hosts + TAIL, encoding="utf-8")
    return path


def _config(tmp_path: Path, text: str) -> Path:
    """A config file holding text."""
    path = tmp_path / "rolecall.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _inventory(capsys: pytest.CaptureFixture[str], *base: str) -> dict[str, dict[str, str]]:
    """The inventory export as rows by address."""
    result = run_cli(capsys, *base, "export", "inventory", "--format", "csv")
    assert result.code == 0, result.err
    return {row["address"]: row for row in csv.DictReader(io.StringIO(result.out))}


def test_an_open_socks_proxy_on_ipv6_loopback_relays_to_an_ipv6_canary(
    capsys: pytest.CaptureFixture[str], db_path: Path
) -> None:
    port = _free_port("::1")
    with microsocks("::1", port):
        result = run_cli(
            capsys, "--db", str(db_path), "scan", "subnet", "::1/128", "--ports", str(port)
        )
    assert result.code == 0, result.err
    assert "1 open ports" in result.out

    rows = _inventory(capsys, "--db", str(db_path))
    assert {"socks5", "socks-proxy", "socks-proxy-open"} <= set(rows["::1"]["roles"].split(";"))
    findings = run_cli(capsys, "--db", str(db_path), "findings", "list")
    assert "open-socks-proxy" in findings.out
    with sqlite3.connect(db_path) as conn:
        (detail,) = conn.execute(
            "SELECT detail FROM observation WHERE kind = 'socks5-relay'"
        ).fetchone()
    # The canary listened on the target's family: the proxy was asked to reach ::1.
    assert json.loads(detail)["canary"].startswith("::1:")


def test_ipv4_and_ipv6_targets_are_scanned_by_separate_nmap_runs(
    capsys: pytest.CaptureFixture[str],
    db_path: Path,
    tmp_path: Path,
    ipv6_listener: tuple[str, int],
) -> None:
    address, port = ipv6_listener
    wrapper, marker = _recording_nmap(tmp_path)
    with socket.create_server(("127.0.91.1", port)):
        config = _config(
            tmp_path,
            f'[scope]\nallow = ["127.0.91.0/30", "::1"]\n[scan]\nnmap = "{wrapper}"\n',
        )
        result = run_cli(
            capsys, "--config", str(config), "--db", str(db_path), "scan", "subnet",
            "127.0.91.0/30", "0:0::1", "--ports", str(port), "--probes", "none",
        )  # fmt: skip
    assert result.code == 0, result.err
    assert "2 open ports" in result.out
    runs = marker.read_text().splitlines()
    assert len(runs) == 2
    ipv6 = [run for run in runs if " -6 " in f" {run} "]
    assert len(ipv6) == 1
    assert ipv6[0].endswith(" ::1/128")
    assert "127.0.91.0/30" in next(run for run in runs if run not in ipv6)
    rows = _inventory(capsys, "--db", str(db_path))
    assert rows[address]["open_ports"] == rows["127.0.91.1"]["open_ports"] == f"{port}/tcp"


def test_a_prefix_too_wide_to_sweep_scans_only_the_addresses_the_inventory_knows(
    capsys: pytest.CaptureFixture[str], db_path: Path, tmp_path: Path, on_loopback: str
) -> None:
    port = _free_port(on_loopback)
    wrapper, marker = _recording_nmap(tmp_path)
    config = _config(
        tmp_path,
        f'[scope]\nallow = ["{PREFIX}", "fd00:e6:2::/64", "fd00:e6:3::/64"]\n'
        f'exclude = ["{EXCLUDED}"]\n[scan]\nnmap = "{wrapper}"\n',
    )
    base = ("--config", str(config), "--db", str(db_path))

    # Nothing known yet: nothing is swept, and the command says so.
    result = run_cli(capsys, *base, "scan", "subnet", "fd00:e6:3::/64", "--ports", str(port))
    assert result.code == 0, result.err
    assert result.err.splitlines()[0] == (
        "scan: fd00:e6:3::/64 is wider than /112 (scan.max_ipv6_sweep) and the inventory knows"
        " no address in it: nothing to scan there"
    )
    assert "scanned 0 addresses" in result.out
    assert not marker.exists()

    ingested = run_cli(capsys, *base, "ingest", "nmap-xml", str(_known_hosts(tmp_path / "k.xml")))
    assert ingested.code == 0, ingested.err
    with microsocks(on_loopback, port):
        result = run_cli(capsys, *base, "scan", "subnet", PREFIX, "--ports", str(port))
    assert result.code == 0, result.err
    assert result.err.splitlines()[0] == (
        f"scan: {PREFIX} is wider than /112 (scan.max_ipv6_sweep), so it is not swept:"
        " scanning the 1 address in it the inventory knows"
    )
    assert "scanned 1 addresses: 1 hosts up, 1 open ports" in result.out
    # One nmap run, on the known address alone: not the excluded one, not the other prefix.
    (run,) = marker.read_text().splitlines()
    assert run.split()[-1] == f"{KNOWN}/128"
    assert " -6 " in run
    rows = _inventory(capsys, *base)
    assert "socks-proxy-open" in rows[KNOWN]["roles"].split(";")
    assert rows[KNOWN]["sources"] == "nmap-xml;probe;scan"


def test_a_scheduled_scan_of_a_wide_prefix_runs_on_the_known_addresses(
    tmp_path: Path, on_loopback: str
) -> None:
    config = _config(
        tmp_path,
        f'[scope]\nallow = ["{PREFIX}"]\n[scan]\nresolve_names = false\n'
        f'[daemon]\nlog_file = "{tmp_path / "daemon.log"}"\n',
    )
    base = ("--config", str(config), "--db", str(tmp_path / "i.db"))
    hosts = str(_known_hosts(tmp_path / "k.xml"))
    assert rolecall(*base, "ingest", "nmap-xml", hosts, cwd=tmp_path).returncode == 0
    added = rolecall(
        *base, "schedule", "add", "scan", "--subnet", PREFIX, "--every", "1", "--id", "wide",
        "--top-ports", "5", "--probes", "none", cwd=tmp_path,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert added.stderr == (
        f"schedule wide: {PREFIX} is wider than /112 (scan.max_ipv6_sweep): each run scans"
        " only the addresses the inventory knows in it\n"
    )
    listed = rolecall(*base, "schedule", "list", cwd=tmp_path)
    assert f"{PREFIX} top-ports 5 probes none" in listed.stdout

    with daemon(*base, cwd=tmp_path, log=tmp_path / "daemon.log") as running:
        done = running.wait_for(event_named("job-ok", job="wide"), timeout=60)
        assert running.stop() == 0
    # Both known addresses are scanned (no exclusion here); only the one on lo is up.
    assert done["outcome"].endswith("scanning the 2 addresses in it the inventory knows")
    assert "1 hosts up" in done["outcome"]


def test_addresses_written_expanded_or_in_capitals_are_stored_compressed(
    capsys: pytest.CaptureFixture[str], db_path: Path, tmp_path: Path
) -> None:
    base = ("--db", str(db_path))
    nmap_xml = _known_hosts(tmp_path / "hosts.xml")
    conn_log = write_tsv(
        tmp_path / "conn.log",
        "conn",
        [
            {
                "ts": "1795392000.0", "uid": "C1", "id.orig_h": "FD00:E6:0:0:0:0:0:A1",
                "id.orig_p": "40000", "id.resp_h": "2001:0DB8:0000::0019", "id.resp_p": "25",
                "proto": "tcp", "conn_state": "SF", "orig_pkts": "5", "resp_pkts": "4",
            }
        ],
    )  # fmt: skip
    firewall = tmp_path / "kern.log"
    firewall.write_text(
        "2026-11-24T01:02:03+0000 gw kernel: [12345.678901] RC-DENY IN=eth1 OUT=eth0"
        " SRC=fd00:00e6:0000:0000:0000:0000:0000:00b2 DST=2001:0db8:0000:0000:0000:0000:0000:0026"
        " LEN=80 TC=0 HOPLIMIT=63 FLOWLBL=0 PROTO=TCP SPT=40000 DPT=25 WINDOW=64800 RES=0x00"
        " SYN URGP=0\n",
        encoding="ascii",
    )
    for kind, path in (("nmap-xml", nmap_xml), ("zeek", conn_log), ("firewall", firewall)):
        result = run_cli(capsys, *base, "ingest", kind, str(path))
        assert result.code == 0, result.err

    addresses = set(_inventory(capsys, *base))
    assert addresses == {
        KNOWN, EXCLUDED, ELSEWHERE, "fd00:e6::a1", "2001:db8::19", "fd00:e6::b2", "2001:db8::26",
    }  # fmt: skip
    services = run_cli(capsys, *base, "export", "services", "--format", "csv")
    assert {row["address"] for row in csv.DictReader(io.StringIO(services.out))} >= {KNOWN}


def test_groups_take_ipv6_networks_and_addresses(
    capsys: pytest.CaptureFixture[str], db_path: Path, tmp_path: Path
) -> None:
    config = _config(
        tmp_path,
        '[[groups]]\nname = "lab-v6"\nnetworks = ["FD00:E6:1::/64"]\n'
        'exclude_networks = ["fd00:e6:1::6"]\n'
        '[[groups]]\nname = "one-v6"\naddresses = ["fd00:e6:2:0::7"]\n'
        '[[groups]]\nname = "v4-only"\nnetworks = ["10.0.0.0/8"]\n',
    )
    base = ("--config", str(config), "--db", str(db_path))
    result = run_cli(capsys, *base, "ingest", "nmap-xml", str(_known_hosts(tmp_path / "k.xml")))
    assert result.code == 0, result.err

    groups = {address: row["groups"] for address, row in _inventory(capsys, *base).items()}
    assert groups == {KNOWN: "lab-v6", EXCLUDED: "", ELSEWHERE: "one-v6"}
