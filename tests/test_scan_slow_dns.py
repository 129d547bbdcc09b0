"""A resolver that never answers does not slow `scan subnet`: names are waited for briefly."""

from __future__ import annotations

import shlex
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.daemon_helpers import ROLECALL

BLACK_HOLE = "127.0.0.2"
HOLD = (
    "import socket, time\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    f"s.bind(('{BLACK_HOLE}', 53))\n"
    "time.sleep(120)\n"
)


def _scan_with_silent_resolver(
    tmp_path: Path, *args: str
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Scan in a network of its own whose only resolver takes queries and never answers."""
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"nameserver {BLACK_HOLE}\noptions timeout:5 attempts:2\n", encoding="ascii")
    scan = shlex.join([*ROLECALL, *args])
    hold = shlex.join([sys.executable, "-c", HOLD])
    script = (
        "mount --make-rprivate / && ip link set lo up"
        f" && mount --bind {shlex.quote(str(conf))} /etc/resolv.conf || exit 97;"
        f" {hold} & hole=$!; sleep 0.3; {scan}; status=$?; kill $hole; exit $status"
    )
    started = time.monotonic()
    done = subprocess.run(
        ["unshare", "-n", "-m", "sh", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    return time.monotonic() - started, done


def test_unreachable_resolver_does_not_hold_the_scan(tmp_path: Path) -> None:
    config = tmp_path / "rolecall.toml"
    config.write_text("[scan]\nresolve_seconds = 1.0\n")
    db = tmp_path / "inventory.db"
    args = ("--config", str(config), "--db", str(db), "scan", "subnet", "127.0.82.0/27")
    started = time.monotonic()
    proc = subprocess.run(
        [*ROLECALL, *args, "--ports", "2525", "--probes", "none"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    # With the suite's resolver every lookup is answered (no such name), nothing is missing.
    assert proc.returncode == 0, proc.stderr
    assert "not resolved" not in proc.stdout
    answered = time.monotonic() - started

    seconds, silent = _scan_with_silent_resolver(
        tmp_path, *args, "--ports", "2525", "--probes", "none"
    )
    out = silent.stdout
    assert silent.returncode == 0, silent.stderr
    # glibc alone would wait 2 x 5 s per address; the scan waits resolve_seconds at most.
    assert seconds < answered + 4.0
    assert "32 hosts up, 0 open ports, 32 names not resolved in time" in out
    with sqlite3.connect(db) as conn:
        runs = conn.execute("SELECT status, counts FROM run ORDER BY id").fetchall()
    assert [status for status, _ in runs] == ["ok", "ok"]
    assert '"names_unresolved": 32' in runs[1][1]


def test_names_rolecall_looked_up_are_stored(tmp_path: Path) -> None:
    db = tmp_path / "inventory.db"
    proc = subprocess.run(
        [*ROLECALL, "--db", str(db), "scan", "subnet", "127.0.0.1", "--ports", "2525"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "not resolved" not in proc.stdout
    with sqlite3.connect(db) as conn:
        names = conn.execute("SELECT address, name, source FROM hostname").fetchall()
    # /etc/hosts names 127.0.0.1; nmap ran with -n, so the name is rolecall's lookup.
    assert names == [("127.0.0.1", "localhost", "scan")]
