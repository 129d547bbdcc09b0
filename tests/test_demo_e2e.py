"""`rolecall demo` end to end: the lab, its traffic, the scan, the capture, findings, report."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from rolecall.orchestrator.demo.capture import can_capture
from rolecall.orchestrator.demo.layout import (
    SMTP_PORT,
    SOCKS_PORT,
    SUBMISSION_PORT,
    WEB_PORT,
    LabAddresses,
)
from tests.cli_helpers import run_cli
from tests.daemon_helpers import ROLECALL

EXPECTED = {
    ("unexpected-mail-client", "www"),
    ("mass-mailer-software", "www"),
    ("mail-via-proxy", "ws-proxied"),
    ("mail-via-proxy", "proxy"),  # the proxy relays ws-proxied's mail
    ("relay-refused", "ws-refused"),
    ("open-relay", "relay"),
    ("open-socks-proxy", "proxy"),
}
NEVER = {("open-socks-proxy", "authproxy"), ("open-relay", "mx"), ("open-relay", "submit")}


def _findings(
    capsys: pytest.CaptureFixture[str], db: Path, lab: LabAddresses
) -> set[tuple[str, str]]:
    """(rule, lab host name) of every finding in the demo's inventory."""
    result = run_cli(capsys, "--db", str(db), "export", "findings", "--format", "json")
    assert result.code == 0, result.err
    return {(row["rule"], lab.name_of(row["address"])) for row in json.loads(result.out)}


def _messages(capsys: pytest.CaptureFixture[str], db: Path) -> int:
    """How many messages the demo's mail clusters count."""
    args = ("--db", str(db), "mail", "cluster", "subject", "--on", "client", "--format", "json")
    result = run_cli(capsys, *args)
    assert result.code == 0, result.err
    return sum(int(row["messages"]) for row in json.loads(result.out))


def _nothing_listens(lab: LabAddresses) -> bool:
    """Whether every lab port is closed again."""
    ports = {"www": WEB_PORT, "relay": SMTP_PORT, "mx": SMTP_PORT, "submit": SUBMISSION_PORT}
    ports |= {"proxy": SOCKS_PORT, "authproxy": SOCKS_PORT}
    for name, port in ports.items():
        try:
            with socket.create_connection((lab[name], port), timeout=0.5):
                return False
        except OSError:
            continue
    return True


@pytest.mark.parametrize("recorded", [False, True], ids=["as-root-live-capture", "recorded"])
def test_demo_finds_what_the_lab_did_and_nothing_false(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, recorded: bool
) -> None:
    network = "127.0.122.128/26"
    lab = LabAddresses.within(network)
    args = ["demo", "--out", str(tmp_path / "demo"), "--network", network]
    started = time.monotonic()
    result = run_cli(capsys, *([*args, "--recorded"] if recorded else args))
    assert result.code == 0, result.err
    assert time.monotonic() - started < 60
    report = tmp_path / "demo" / "report.html"
    assert f"report: {report.resolve()}" in result.out
    assert report.stat().st_size > 1000
    kind = "recorded" if recorded or not can_capture() else "live"
    assert f"({kind} capture" in result.out
    # Root is named as the reason only when the demo does not run as root.
    assert ("needs root" in result.err) == (os.geteuid() != 0), result.err

    found = _findings(capsys, tmp_path / "demo" / "demo.db", lab)
    assert found >= EXPECTED, found
    assert _messages(capsys, tmp_path / "demo" / "demo.db") == 6  # the proxy's copy is no 7th
    assert not found & NEVER, found
    for rule, name in EXPECTED:
        assert f"{rule:24} {lab[name]:15} {name:11}" in result.out
    assert _nothing_listens(lab)


def test_demo_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    network = "127.0.122.192/26"
    lab = LabAddresses.within(network)
    proc = subprocess.Popen(
        [*ROLECALL, "demo", "--out", str(tmp_path / "demo"), "--network", network],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    try:
        # Once the lab's traffic is done the scan starts: interrupt it there.
        while "lab traffic:" not in proc.stderr.readline():
            assert proc.poll() is None, "the demo ended before its traffic"
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
        if proc.stdout is not None:
            proc.stdout.close()
    assert code == 130, err
    assert "interrupted" in err
    assert "Traceback" not in err
    assert _nothing_listens(lab)
