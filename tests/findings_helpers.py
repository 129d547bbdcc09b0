"""Helpers for findings, groups and history tests: loopback captures of real clients, CLI reads."""

from __future__ import annotations

import http.client
import json
import poplib
import socket
import socketserver
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from rolecall.orchestrator.demo.lab_support import serving
from tests.cli_helpers import run_cli
from tests.pcap_helpers import SourcedSMTP, loopback_capture

NET = "127.0.120.0/24"
"""The loopback network these tests may use, and nothing else."""


def at(host: int) -> str:
    """The address of host number `host` in NET."""
    return f"127.0.120.{host}"


@contextmanager
def capture(tmp_path: Path, name: str) -> Iterator[Path]:
    """Record NET's loopback traffic into tmp_path/name.pcap while the block runs."""
    with loopback_capture(tmp_path / f"{name}.pcap", NET) as path:
        yield path


def send_mail(
    source: str,
    server: tuple[str, int],
    rcpts: list[str],
    mailer: str = "Microsoft Outlook 16.0",
    proxy: tuple[str, int] | None = None,
    sender: str = "alice@corp.test",
) -> dict[str, tuple[int, bytes]]:
    """Send one message with smtplib from `source`; return the refused recipients."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(rcpts)
    message["Subject"] = "quarterly figures"
    message["X-Mailer"] = mailer
    message.set_content("Hello,\nthe figures are attached.\n")
    client = SourcedSMTP(source, proxy)
    client.connect(*server)
    try:
        refused: dict[str, tuple[int, bytes]] = client.send_message(message, sender, rcpts)
    except Exception as exc:  # smtplib raises when every recipient is refused
        refused = getattr(exc, "recipients", {})
    finally:
        client.quit()
    return refused


def fetch_web(source: str, url: str) -> None:
    """GET a URL from a loopback source address."""
    host, _, port = url.removeprefix("http://").partition(":")
    connection = http.client.HTTPConnection(host, int(port or 80), source_address=(source, 0))
    connection.request("GET", "/")
    connection.getresponse().read()
    connection.close()


def write_config(tmp_path: Path, text: str) -> Path:
    """A config file holding `text`."""
    path = tmp_path / "rolecall.toml"
    path.write_text(text)
    return path


def cli(capsys: pytest.CaptureFixture[str], db: Path | str, config: Path | None, *args: str) -> Any:
    """Run the CLI with the test's database (and config), asserting success."""
    base = ["--db", str(db), "-q"] + (["--config", str(config)] if config else [])
    result = run_cli(capsys, *base, *args)
    assert result.code == 0, result.err
    return result


def ingest(
    capsys: pytest.CaptureFixture[str], db: Path | str, config: Path | None, *pcaps: Path
) -> None:
    """Ingest captures through the CLI."""
    cli(capsys, db, config, "ingest", "pcap", *map(str, pcaps))


def findings(
    capsys: pytest.CaptureFixture[str], db: Path | str, config: Path | None = None
) -> dict[tuple[str, str], dict[str, Any]]:
    """Every finding, by (rule, address), as `findings list --format json` prints them."""
    out = cli(capsys, db, config, "findings", "list", "--format", "json").out
    return {(row["rule"], row["address"]): row for row in json.loads(out)}


def roles(
    capsys: pytest.CaptureFixture[str], db: Path | str, config: Path | None = None
) -> dict[str, dict[str, Any]]:
    """The inventory export, by address."""
    out = cli(capsys, db, config, "export", "inventory", "--format", "json").out
    return {row["address"]: row for row in json.loads(out)}


MAILBOX_MESSAGE = (
    b"From: bulk@example.test\r\nTo: reader@corp.test\r\nSubject: offer\r\n"
    b"X-Mailer: The Bat! (v9.1.18)\r\n\r\nBuy now.\r\n"
)


class _Pop3(socketserver.StreamRequestHandler):
    """A POP3 server (RFC 1939) with one message in the mailbox."""

    def _say(self, line: bytes) -> None:
        """Send one reply line."""
        self.wfile.write(line + b"\r\n")

    def handle(self) -> None:
        """Serve USER/PASS/STAT/LIST/RETR/QUIT."""
        self._say(b"+OK POP3 ready")
        for raw in self.rfile:
            verb = raw.strip().split(b" ")[0].upper()
            if verb in (b"USER", b"PASS", b"NOOP"):
                self._say(b"+OK")
            elif verb == b"STAT":
                self._say(b"+OK 1 %d" % len(MAILBOX_MESSAGE))
            elif verb == b"RETR":
                self._say(b"+OK message follows")
                self.wfile.write(MAILBOX_MESSAGE + b".\r\n")
            elif verb == b"QUIT":
                self._say(b"+OK bye")
                return
            else:
                self._say(b"-ERR unknown")


@contextmanager
def pop3_server(address: str, port: int) -> Iterator[None]:
    """Run the one-message POP3 server on address:port."""
    socketserver.TCPServer.allow_reuse_address = True
    server = socketserver.ThreadingTCPServer((address, port), _Pop3)
    with serving(server):
        yield


class SourcedPOP3(poplib.POP3):
    """poplib's client bound to a loopback source address."""

    def __init__(self, source: str, server: tuple[str, int]) -> None:
        """Connect from `source` to `server`."""
        self.source = source
        super().__init__(server[0], server[1], timeout=5)

    def _create_socket(self, timeout: float) -> socket.socket:
        """Connect from the source address."""
        return socket.create_connection((self.host, self.port), timeout, (self.source, 0))


def read_mailbox(source: str, server: tuple[str, int]) -> bytes:
    """Log in with poplib from `source` and retrieve message 1."""
    client = SourcedPOP3(source, server)
    client.user("reader")
    client.pass_("secret")
    _, lines, _ = client.retr(1)
    client.quit()
    return b"\r\n".join(lines)
