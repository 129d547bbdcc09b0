"""The daemon as a real subprocess, its JSON log, and an SMTP receiver for the weekly report."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

ROLECALL = [sys.executable, "-c", "from rolecall.orchestrator.cli.app import entry; entry()"]


def free_port(address: str) -> int:
    """A TCP port free on address."""
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


@dataclass
class Inbox:
    """Messages an aiosmtpd receiver accepted."""

    messages: list[bytes] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)


class _Keep:
    """aiosmtpd handler that keeps every message."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        """Keep the message."""
        self.inbox.messages.append(envelope.content)
        self.inbox.recipients.append(list(envelope.rcpt_tos))
        return "250 Message accepted"


@contextmanager
def smtp_receiver(address: str) -> Iterator[tuple[int, Inbox]]:
    """A real SMTP server (aiosmtpd) on address; yields its port and inbox."""
    inbox = Inbox()
    port = free_port(address)
    controller = Controller(_Keep(inbox), hostname=address, port=port)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


def rolecall(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the rolecall command line in a subprocess and wait for it."""
    return subprocess.run(
        [*ROLECALL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@dataclass
class Daemon:
    """A running `rolecall run` and the file its JSON log goes to."""

    proc: subprocess.Popen[str]
    log: Path

    def events(self) -> list[dict[str, Any]]:
        """Every event logged so far."""
        if not self.log.exists():
            return []
        lines = self.log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30.0
    ) -> dict[str, Any]:
        """The first event matching predicate; AssertionError with the log after timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for found in self.events():
                if predicate(found):
                    return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        stderr = (
            self.proc.stderr.read() if self.proc.poll() is not None and self.proc.stderr else ""
        )
        raise AssertionError(f"no such event; log: {self.events()}; stderr: {stderr}")

    def signal(self, signum: int) -> None:
        """Send a signal to the daemon."""
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait; return the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


@contextmanager
def daemon(*args: str, cwd: Path, log: Path, run_args: Sequence[str] = ()) -> Iterator[Daemon]:
    """Start `rolecall ARGS run RUN_ARGS` (its config must log to log); kill it on failure."""
    proc = subprocess.Popen(
        [*ROLECALL, *args, "run", *run_args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    running = Daemon(proc, log)
    try:
        yield running
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def event_named(name: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    """A predicate for an event with this name and these field values."""

    def matches(found: dict[str, Any]) -> bool:
        return found.get("event") == name and all(found.get(k) == v for k, v in fields.items())

    return matches
