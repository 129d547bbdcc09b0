"""Stopping real `rolecall` processes with SIGINT (Ctrl-C) or SIGTERM, and inputs that take long."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.daemon_helpers import ROLECALL
from tests.pcap_helpers import link_frame, udp_datagram

STOP_SECONDS = 2.0


@dataclass(frozen=True)
class Stop:
    """A signal that stops rolecall, the exit status it gives and the one line it says."""

    signal: signal.Signals
    status: int
    said: str


CTRL_C = Stop(signal.SIGINT, 130, "rolecall: interrupted")
SIGTERM = Stop(signal.SIGTERM, 143, "rolecall: terminated")
STOPS = [pytest.param(CTRL_C, id="ctrl-c"), pytest.param(SIGTERM, id="sigterm")]


def start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    """Start rolecall in a process group of its own, as a shell starts a foreground job."""
    return subprocess.Popen(
        [*ROLECALL, *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for_line(proc: subprocess.Popen[str], wanted: str) -> list[str]:
    """Read stderr until a line containing wanted; the lines read."""
    assert proc.stderr is not None
    lines: list[str] = []
    while line := proc.stderr.readline():
        lines.append(line)
        if wanted in line:
            return lines
    pytest.fail(f"rolecall ended before saying {wanted!r}: {''.join(lines)}")


def send(proc: subprocess.Popen[str], stop: Stop, whole_group: bool) -> tuple[float, str]:
    """Send the signal to the process group (as a terminal does) or to rolecall alone.

    Returns the seconds rolecall took to end, and its stderr.
    """
    started = time.monotonic()
    if whole_group:
        os.killpg(proc.pid, stop.signal)
    else:
        proc.send_signal(stop.signal)
    _out, err = proc.communicate(timeout=30)
    return time.monotonic() - started, err


def runs(db: Path) -> list[tuple[str, str]]:
    """Every run's kind and status."""
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT kind, status FROM run ORDER BY id").fetchall()


def wait_for_running_run(db: Path, proc: subprocess.Popen[str]) -> None:
    """Wait until rolecall has recorded the start of its run."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and proc.poll() is None:
        # Read-only: connecting must not create the inventory before rolecall does.
        with (
            contextlib.suppress(sqlite3.Error),
            sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn,
        ):
            if ("running",) in conn.execute("SELECT status FROM run").fetchall():
                return
        time.sleep(0.05)
    pytest.fail(f"rolecall never started its run: {proc.communicate()}")


def large_nmap_xml(path: Path, hosts: int) -> None:
    """An nmap XML file of many hosts, each with an open port."""
    with path.open("w") as out:
        out.write('<?xml version="1.0"?>\n<nmaprun scanner="nmap" start="1796246038">\n')
        for index in range(hosts):
            address = f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}"
            out.write(
                '<host endtime="1796246038"><status state="up" reason="syn-ack"/>'
                f'<address addr="{address}" addrtype="ipv4"/><ports>'
                '<port protocol="tcp" portid="25"><state state="open" reason="syn-ack"/>'
                '<service name="smtp"/></port></ports></host>\n'
            )
        out.write("</nmaprun>\n")


def long_quiet_capture(path: Path, packets: int) -> None:
    """A capture of one long UDP flow: its reader works for seconds before its first record."""
    frame = link_frame(udp_datagram("10.0.0.1", 5000, "10.0.0.2", 9999, b"x" * 16), "eth")
    with path.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for index in range(packets):
            out.write(struct.pack("<IIII", 1700000000 + index // 1000, index % 1000 * 1000,
                                  len(frame), len(frame)))  # fmt: skip
            out.write(frame)
