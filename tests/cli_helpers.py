"""Running the real command line in-process and listeners that count who connected."""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.core import TyperGroup

from rolecall.orchestrator.cli.app import main


@dataclass
class Result:
    """Exit status and output of one command-line run."""

    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    """Run `rolecall ARGS` in-process and capture what it printed."""
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


@dataclass
class Listener:
    """A TCP listener on a loopback address that counts accepted connections."""

    address: str
    port: int
    accepted: int = 0
    _sock: socket.socket = field(init=False)
    _thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((self.address, self.port))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        """Accept and close connections until stopped, counting them."""
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        """Stop accepting and release the port."""
        self._stop.set()
        self._thread.join()
        self._sock.close()


def cli_json(
    capsys: pytest.CaptureFixture[str], db: Path | str, config: Path | None, *args: str
) -> Any:
    """Run a listing or export of the CLI with --format json and return what it printed, parsed."""
    base = ["--db", str(db), "-q"] + (["--config", str(config)] if config else [])
    result = run_cli(capsys, *base, *args, "--format", "json")
    assert result.code == 0, result.err
    return json.loads(result.out)


def ingest(capsys: pytest.CaptureFixture[str], db: Path, config: Path | None, pcap: Path) -> None:
    """Ingest one capture through the CLI, asserting success."""
    base = ["--db", str(db), "-q"] + (["--config", str(config)] if config else [])
    result = run_cli(capsys, *base, "ingest", "pcap", str(pcap))
    assert result.code == 0, result.err


def command_paths(command: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and group below a Click command, as word tuples (the root is ())."""
    paths = [prefix]
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            paths.extend(command_paths(sub, (*prefix, name)))
    return paths
