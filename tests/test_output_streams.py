"""Exports and reports written to a device or a pipe write into it, never replace it."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli
from tests.nmap_samples import write_scan


def _inventory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> str:
    """An inventory of three hosts from an nmap scan; its path."""
    db = str(tmp_path / "inv.db")
    scan = write_scan(tmp_path / "scan.xml", 3)
    assert run_cli(capsys, "--db", db, "ingest", "nmap-xml", str(scan)).code == 0
    return db


def _drain(fifo: Path, into: list[bytes]) -> threading.Thread:
    """Read the FIFO to its end in a thread, appending what came."""

    def read() -> None:
        with fifo.open("rb") as handle:
            into.append(handle.read())

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("command", "lines"),
    [(["export", "inventory"], 4), (["report", "--format", "csv", "--last", "7d"], 1)],
    ids=["export", "report"],
)
def test_written_into_a_fifo(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str], lines: int
) -> None:
    """The reader of a named pipe gets the output, and the pipe is still a pipe after."""
    db = _inventory(capsys, tmp_path)
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = _drain(fifo, received)
    result = run_cli(capsys, "--db", db, *command, "-o", str(fifo))
    reader.join(10)
    assert result.code == 0, result.err
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert received
    assert received[0].count(b"\n") == lines
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.fifo")] == []


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_written_into_a_null_device(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`export -o` onto a null device (a node of this test's, like /dev/null) leaves it a device."""
    db = _inventory(capsys, tmp_path)
    null = tmp_path / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    result = run_cli(capsys, "--db", db, "export", "inventory", "-o", str(null))
    assert result.code == 0, result.err
    assert stat.S_ISCHR(null.stat().st_mode)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".null")] == []
