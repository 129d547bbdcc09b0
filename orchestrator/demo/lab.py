"""The demo's lab: real mail servers, SOCKS proxies and a web server on loopback addresses."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer  # noqa: N811 - not the client of smtplib
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from rolecall.orchestrator.demo.lab_support import server_tls, serving, wait_listening
from rolecall.orchestrator.demo.layout import (
    DEMO_PASSWORD,
    DEMO_USER,
    LOCAL_DOMAIN,
    SMTP_PORT,
    SOCKS_PORT,
    SUBMISSION_PORT,
    WEB_PORT,
    LabAddresses,
)
from rolecall.orchestrator.errors import RunError


@dataclass
class MailLog:
    """What the lab's mail servers accepted and refused."""

    accepted: list[tuple[str, str, list[str]]] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)


class _MailPolicy:
    """An aiosmtpd handler: accept every recipient, or only those of the local domain."""

    def __init__(self, server: str, log: MailLog, local_only: bool) -> None:
        self.server = server
        self.log = log
        self.local_only = local_only

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, _o: Any
    ) -> str:
        """Accept or refuse one recipient."""
        if self.local_only and not address.lower().endswith("@" + LOCAL_DOMAIN):
            self.log.refused.append((self.server, address))
            return "550 5.7.1 Relaying denied"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTPServer, session: Session, envelope: Envelope
    ) -> str:
        """Keep a note of the message."""
        self.log.accepted.append((self.server, str(envelope.mail_from), list(envelope.rcpt_tos)))
        return "250 Message accepted"


def _authenticate(
    server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    """Accept the lab's one user."""
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        DEMO_USER.encode(),
        DEMO_PASSWORD.encode(),
    )
    return AuthResult(success=ok)


@contextmanager
def mail_server(address: str, port: int, handler: _MailPolicy, **kwargs: Any) -> Iterator[None]:
    """Run an aiosmtpd server on address:port until the block ends."""
    controller = Controller(handler, hostname=address, port=port, **kwargs)
    try:
        controller.start()
    except (OSError, RuntimeError) as exc:
        raise RunError(f"demo lab: cannot start a mail server on {address}:{port}: {exc}") from None
    try:
        yield
    finally:
        controller.stop()


@contextmanager
def microsocks(address: str, user: str = "", password: str = "") -> Iterator[None]:
    """Run microsocks on address (outgoing connections from the same address) until the end."""
    binary = shutil.which("microsocks")
    if binary is None:
        raise RunError("demo lab: microsocks is not installed (apt-get install microsocks)")
    args = [binary, "-i", address, "-p", str(SOCKS_PORT), "-b", address]
    if user:
        args += ["-u", user, "-P", password]
    proc = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_listening(address, SOCKS_PORT)
        yield
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


class _Page(BaseHTTPRequestHandler):
    """A small intranet home page."""

    server_version = "nginx/1.22.1"
    sys_version = ""

    def do_GET(self) -> None:
        """Serve the page."""
        body = b"<html><body><h1>Intranet</h1></body></html>\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        """Answer HEAD with the headers of the page."""
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""


class _WebServer(ThreadingHTTPServer):
    """Python's HTTP server, named by its address (no reverse-DNS lookup), quiet on resets."""

    daemon_threads = True

    def server_bind(self) -> None:
        """Bind without asking the resolver for the address's name."""
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(self.server_address)
        host, port = self.socket.getsockname()[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore peers that reset the connection (scanners do)."""


@contextmanager
def web_server(address: str) -> Iterator[None]:
    """Run the web server on address until the block ends."""
    try:
        server = _WebServer((address, WEB_PORT), _Page)
    except OSError as exc:
        raise RunError(f"demo lab: cannot listen on {address}:{WEB_PORT}: {exc.strerror}") from None
    with serving(server):
        yield


@contextmanager
def running_lab(addresses: LabAddresses, workdir: Path) -> Iterator[MailLog]:
    """Start every lab server; stop all of them when the block ends, however it ends."""
    log = MailLog()
    # aiosmtpd logs every scanner that hangs up mid-session; the demo's output stays readable.
    mail_logger = logging.getLogger("mail.log")
    level = mail_logger.level
    mail_logger.setLevel(logging.CRITICAL)
    with ExitStack() as stack:
        stack.callback(mail_logger.setLevel, level)
        stack.enter_context(web_server(addresses["www"]))
        relay = _MailPolicy("relay", log, local_only=False)
        stack.enter_context(mail_server(addresses["relay"], SMTP_PORT, relay))
        corporate = _MailPolicy("mx", log, local_only=True)
        stack.enter_context(mail_server(addresses["mx"], SMTP_PORT, corporate))
        submission = _MailPolicy("submit", log, local_only=False)
        stack.enter_context(
            mail_server(
                addresses["submit"],
                SUBMISSION_PORT,
                submission,
                tls_context=server_tls(workdir, "submit"),
                require_starttls=True,
                auth_required=True,
                auth_require_tls=True,
                authenticator=_authenticate,
            )
        )
        stack.enter_context(microsocks(addresses["proxy"]))
        stack.enter_context(microsocks(addresses["authproxy"], DEMO_USER, DEMO_PASSWORD))
        yield log
