"""Ctrl-C and SIGTERM on real `rolecall` processes: stop within 2 s, keep what finished."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli_helpers import Listener
from tests.daemon_helpers import ROLECALL, rolecall
from tests.signal_helpers import (
    STOP_SECONDS,
    STOPS,
    Stop,
    large_nmap_xml,
    long_quiet_capture,
    runs,
    send,
    start,
    wait_for_line,
    wait_for_running_run,
)


def _hosts_up(db: Path) -> int:
    """How many hosts the inventory saw up."""
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT COUNT(*) FROM observation WHERE kind = 'host-up'").fetchone()
        return int(row[0])


@pytest.mark.parametrize("whole_group", [True, False], ids=["process-group", "rolecall-alone"])
@pytest.mark.parametrize("stop", STOPS)
def test_signal_stops_a_scan_and_keeps_finished_hosts(
    tmp_path: Path, stop: Stop, listeners: Callable[[str, int], Listener], whole_group: bool
) -> None:
    listeners("127.0.81.1", 2525)
    config = tmp_path / "rolecall.toml"
    # A rate limit makes the /27 take half a minute, chunk after chunk of four addresses.
    config.write_text(
        '[scan]\nports = "1-59,2525"\nmax_rate = 60\nchunk_addresses = 4\nresolve_names = false\n'
    )
    db = tmp_path / "inventory.db"
    proc = start(
        "--config", str(config), "--db", str(db), "scan", "subnet", "127.0.81.0/27",
        "--probes", "none", cwd=tmp_path,
    )  # fmt: skip
    before = wait_for_line(proc, "scanning: 4/32")
    seconds, err = send(proc, stop, whole_group)

    assert seconds < STOP_SECONDS
    assert proc.returncode == stop.status
    assert err.strip() == stop.said, [*before, err]
    assert runs(db) == [("scan", "interrupted")]
    assert 4 <= _hosts_up(db) < 32
    with sqlite3.connect(db) as conn:
        assert conn.execute(
            "SELECT address, port FROM observation WHERE kind = 'port-open'"
        ).fetchall() == [("127.0.81.1", 2525)]


@pytest.mark.parametrize("whole_group", [True, False], ids=["process-group", "rolecall-alone"])
@pytest.mark.parametrize("stop", STOPS)
def test_signal_stops_an_ingest_and_keeps_finished_files(
    tmp_path: Path, stop: Stop, whole_group: bool
) -> None:
    small, large = tmp_path / "small.xml", tmp_path / "large.xml"
    large_nmap_xml(small, 3)
    large_nmap_xml(large, 400_000)
    db = tmp_path / "inventory.db"
    proc = start("--db", str(db), "ingest", "nmap-xml", str(small), str(large), cwd=tmp_path)
    wait_for_line(proc, "1/2 small.xml")
    time.sleep(0.5)
    assert proc.poll() is None, "the large file was read before the interrupt"
    seconds, err = send(proc, stop, whole_group)

    assert seconds < STOP_SECONDS
    assert proc.returncode == stop.status
    assert err.strip() == stop.said
    assert runs(db) == [("ingest nmap-xml", "interrupted")]
    assert _hosts_up(db) == 3


@pytest.mark.parametrize("whole_group", [True, False], ids=["process-group", "rolecall-alone"])
@pytest.mark.parametrize("stop", STOPS)
def test_signal_stops_a_report_email_waiting_for_a_silent_relay(
    tmp_path: Path, stop: Stop, whole_group: bool
) -> None:
    with socket.socket() as relay:
        # A relay that accepts the connection and never greets: rolecall waits on it.
        relay.bind(("127.0.0.1", 0))
        relay.listen(1)
        relay.settimeout(15)
        db = tmp_path / "inventory.db"
        hosts = tmp_path / "hosts.xml"
        large_nmap_xml(hosts, 3)
        assert (
            rolecall("--db", str(db), "ingest", "nmap-xml", str(hosts), cwd=tmp_path).returncode
            == 0
        )
        config = tmp_path / "rolecall.toml"
        config.write_text(
            f'[email]\nhost = "127.0.0.1"\nport = {relay.getsockname()[1]}\ntls = "none"\n'
            f'to = ["soc@example.org"]\ntimeout = 60.0\nkeep_dir = "{tmp_path / "kept"}"\n'
        )
        proc = start("--config", str(config), "--db", str(db), "report", "email", cwd=tmp_path)
        try:
            connection, _ = relay.accept()
        except TimeoutError:
            proc.kill()
            pytest.fail(f"rolecall never reached the relay: {proc.communicate()}")
        with connection:
            seconds, err = send(proc, stop, whole_group)

    assert seconds < STOP_SECONDS
    assert proc.returncode == stop.status
    assert err.strip() == stop.said
    assert runs(db) == [("ingest nmap-xml", "ok"), ("report-email", "interrupted")]


class _SilentServer:
    """A loopback TCP server that accepts and never says a word, holding every connection."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket()
        self.sock.bind((address, 0))
        self.sock.listen(16)
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.sock.getsockname()[1])

    def _serve(self) -> None:
        """Accept and hold connections until closed."""
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(connection)

    def close(self) -> None:
        """Stop listening and drop every connection."""
        self.sock.close()
        for connection in self.held:
            connection.close()


@pytest.mark.parametrize("stop", STOPS)
def test_signal_stops_probes_waiting_on_a_silent_port(tmp_path: Path, stop: Stop) -> None:
    server = _SilentServer("127.0.81.40")
    try:
        db = tmp_path / "inventory.db"
        proc = start(
            "--db", str(db), "scan", "subnet", "127.0.81.40", "--ports", str(server.port),
            cwd=tmp_path,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        # nmap's connect is the first; the probes' come after it.
        while len(server.held) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert len(server.held) >= 2, proc.communicate()
        seconds, err = send(proc, stop, whole_group=True)
    finally:
        server.close()

    assert seconds < STOP_SECONDS
    assert proc.returncode == stop.status
    assert err.splitlines()[-1] == stop.said
    assert runs(db) == [("scan", "interrupted")]
    assert _hosts_up(db) == 1


def test_progress_bar_moves_while_nmap_scans_a_chunk(tmp_path: Path) -> None:
    config = tmp_path / "rolecall.toml"
    config.write_text('[scan]\nports = "1-30"\nmax_rate = 150\nresolve_names = false\n')
    db = tmp_path / "inventory.db"
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [*ROLECALL, "--config", str(config), "--db", str(db), "scan", "subnet", "127.0.81.64/27"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=secondary,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
    )
    os.close(secondary)
    shown = b""
    with contextlib.suppress(OSError):  # the terminal closes when rolecall ends
        while chunk := os.read(primary, 4096):
            shown += chunk
    os.close(primary)
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    counts = {int(found) for found in re.findall(rb"(\d+)/32", shown)}
    # One chunk of 32 addresses: the bar moves inside it, not only when nmap ends.
    assert len(counts - {0, 32}) >= 2, shown
    assert 32 in counts


@pytest.mark.parametrize("stop", STOPS)
def test_signal_stops_a_capture_ingest_waiting_for_its_reader(tmp_path: Path, stop: Stop) -> None:
    capture = tmp_path / "quiet.pcap"
    long_quiet_capture(capture, 2_000_000)
    db = tmp_path / "inventory.db"
    proc = start("--db", str(db), "ingest", "pcap", str(capture), cwd=tmp_path)
    wait_for_running_run(db, proc)
    time.sleep(0.3)
    assert proc.poll() is None, "the capture was read before the interrupt"
    seconds, err = send(proc, stop, whole_group=True)

    assert seconds < STOP_SECONDS
    assert proc.returncode == stop.status
    assert err.strip() == stop.said
    assert runs(db) == [("ingest pcap", "interrupted")]
