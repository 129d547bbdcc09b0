"""Real loopback servers for the active-probe tests: SOCKS proxies, SMTP servers and bad peers."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import signal
import socketserver
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, AnyStr

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from rolecall.inventory.derivation.role_rules import roles_from_observation
from rolecall.orchestrator.demo.lab_support import serving, wait_listening
from rolecall.probes.active.settings import ProbeSettings
from rolecall.probes.gate import OutOfScopeError
from rolecall.probes.records import Observation, Record, Service

FAST = ProbeSettings(connect_timeout=2.0, read_timeout=2.0, banner_timeout=0.5, host_budget=20.0)
"""Settings for loopback tests: short waits, the real code paths."""


class LoopbackGate:
    """A scope that admits one loopback network and records every address it was asked about."""

    def __init__(self, network: str = "127.0.0.0/8") -> None:
        """Admit addresses inside ``network`` only."""
        self.network = ipaddress.ip_network(network)
        self.asked: list[str] = []

    def admit(self, address: str) -> None:
        """Return if ``address`` is inside the network, else raise OutOfScopeError."""
        self.asked.append(address)
        if ipaddress.ip_address(address) not in self.network:
            raise OutOfScopeError(f"{address} is outside {self.network}")


@contextmanager
def process(args: list[str], address: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server process in its own session until the block ends, then stop its group."""
    proc = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        wait_listening(address, port)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


@contextmanager
def microsocks(address: str, port: int, user: str = "", password: str = "") -> Iterator[None]:
    """Run Debian's microsocks (SOCKS5) on address:port, with user/password if given."""
    args = ["microsocks", "-i", address, "-p", str(port)]
    if user:
        args += ["-u", user, "-P", password]
    with process(args, address, port):
        yield


DANTE_CONF = """\
logoutput: {log}
internal: {address} port = {port}
external: {address}
socksmethod: none
clientmethod: none
user.privileged: root
user.unprivileged: nobody
client pass {{
  from: 127.0.0.0/8 to: 0.0.0.0/0
  log: connect error
}}
socks {verdict} {{
  from: 127.0.0.0/8 to: 0.0.0.0/0
  command: connect
  log: connect error
}}
"""


@contextmanager
def dante(tmp_path: Path, port: int, *, refuse: bool = False) -> Iterator[Path]:
    """Run dante-server (SOCKS4 and SOCKS5, no auth) on 127.0.0.1:port; yield its log path.

    Dante binds only addresses configured on an interface, so it takes 127.0.0.1.
    With ``refuse`` its rules block every CONNECT.
    """
    log = tmp_path / f"danted-{port}.log"
    conf = tmp_path / f"danted-{port}.conf"
    verdict = "block" if refuse else "pass"
    conf.write_text(DANTE_CONF.format(log=log, address="127.0.0.1", port=port, verdict=verdict))
    with process(["danted", "-f", str(conf), "-N", "1"], "127.0.0.1", port):
        yield log


DOVECOT_CONF = """\
base_dir = {root}/run
state_dir = {root}/state
protocols = imap pop3
listen = {address}
ssl = no
log_path = {root}/dovecot.log
passdb {{
  driver = static
  args = password=never-used
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={root}/home
}}
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"""


@contextmanager
def dovecot(tmp_path: Path, address: str, imap: int, pop3: int) -> Iterator[None]:
    """Run Dovecot (IMAP and POP3, no TLS) in the foreground on address."""
    conf = tmp_path / "dovecot.conf"
    conf.write_text(DOVECOT_CONF.format(root=tmp_path, address=address, imap=imap, pop3=pop3))
    with process(["dovecot", "-F", "-c", str(conf)], address, imap):
        wait_listening(address, pop3)
        yield


def dante_destinations(log: Path) -> list[str]:
    """Return every destination ("addr.port") dante was asked to connect to, from its log."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return re.findall(r"tcp/connect \[: \S+ \S+ -> \S+ (\S+)", text)


@dataclass
class MailLog:
    """Every SMTP command verb a server received, in order."""

    commands: list[str] = field(default_factory=list)


class RecordingSMTP(SMTP):
    """aiosmtpd's SMTP server that logs every command verb and can send reply lines slowly."""

    def __init__(self, handler: Any, log: MailLog, line_delay: float, **kwargs: Any) -> None:
        """Serve like aiosmtpd, logging into ``log``; wait ``line_delay`` before each reply line."""
        super().__init__(handler, **kwargs)
        self.mail_log = log
        self.line_delay = line_delay

    async def push(self, status: AnyStr) -> None:
        """Send one reply line, after a pause so each line travels in its own TCP segment."""
        if self.line_delay:
            await asyncio.sleep(self.line_delay)
        await super().push(status)

    def _record(self, verb: str) -> None:
        """Log a command verb."""
        self.mail_log.commands.append(verb)

    async def smtp_EHLO(self, arg: str) -> None:  # noqa: N802
        """Log and serve EHLO."""
        self._record("EHLO")
        await super().smtp_EHLO(arg)

    async def smtp_MAIL(self, arg: str) -> None:  # noqa: N802
        """Log and serve MAIL."""
        self._record("MAIL")
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str) -> None:  # noqa: N802
        """Log and serve RCPT."""
        self._record("RCPT")
        await super().smtp_RCPT(arg)

    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802
        """Log and serve DATA (the probe must never send it)."""
        self._record("DATA")
        await super().smtp_DATA(arg)

    async def smtp_RSET(self, arg: str) -> None:  # noqa: N802
        """Log and serve RSET."""
        self._record("RSET")
        await super().smtp_RSET(arg)

    async def smtp_QUIT(self, arg: str) -> None:  # noqa: N802
        """Log and serve QUIT."""
        self._record("QUIT")
        await super().smtp_QUIT(arg)


class RelayPolicy:
    """An aiosmtpd handler: accept every recipient, or only those of ``local_domain``."""

    def __init__(self, local_domain: str = "") -> None:
        """Refuse (550) recipients outside ``local_domain`` when it is given."""
        self.local_domain = local_domain

    async def handle_RCPT(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        """Accept or refuse one recipient."""
        if self.local_domain and not address.lower().endswith("@" + self.local_domain):
            return "550 5.7.1 Relaying denied"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        """Accept a message (never reached by the probe)."""
        return "250 Message accepted"


def _refuse_everyone(*_args: Any) -> AuthResult:
    """An authenticator no credentials satisfy."""
    return AuthResult(success=False, handled=False)


class MailServer(Controller):
    """A real aiosmtpd server in a thread, logging commands into ``log``."""

    def __init__(
        self,
        address: str,
        port: int,
        policy: RelayPolicy,
        *,
        line_delay: float = 0.0,
        **smtp_kwargs: Any,
    ) -> None:
        """Serve on address:port with ``policy``; extra keywords go to aiosmtpd's SMTP."""
        super().__init__(policy, hostname=address, port=port, **smtp_kwargs)
        self.log = MailLog()
        self.line_delay = line_delay

    def factory(self) -> RecordingSMTP:
        """Build the recording server for each connection."""
        return RecordingSMTP(self.handler, self.log, self.line_delay, **self.SMTP_kwargs)


@contextmanager
def mail_server(
    address: str, port: int, policy: RelayPolicy, **kwargs: Any
) -> Iterator[MailServer]:
    """Run an aiosmtpd server for the block."""
    server = MailServer(address, port, policy, **kwargs)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def submission_kwargs(tls: ssl.SSLContext) -> dict[str, Any]:
    """aiosmtpd settings of a submission server: STARTTLS first, then AUTH required."""
    return {
        "tls_context": tls,
        "require_starttls": True,
        "auth_required": True,
        "auth_require_tls": True,
        "authenticator": _refuse_everyone,
    }


class _Head(BaseHTTPRequestHandler):
    """Answers HEAD and GET with an empty 200."""

    def do_HEAD(self) -> None:
        """Reply 200 with no body."""
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD  # noqa: N815 - the stdlib's handler naming

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""


class _LoopbackHTTPServer(ThreadingHTTPServer):
    """Python's HTTP server without its reverse-DNS lookup of the bound address."""

    def server_bind(self) -> None:
        """Bind; name the server by its address (http.server would ask the system resolver)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore peers that reset the connection (scanners do)."""


@contextmanager
def web_server(address: str, port: int, tls: ssl.SSLContext | None = None) -> Iterator[None]:
    """Run Python's HTTP server (over TLS when a context is given) on address:port."""
    server = _LoopbackHTTPServer((address, port), _Head)
    if tls is not None:
        # The handshake happens in the handler's thread: in accept(), one slow or plain-text
        # client would hold up every other connection (the probes try several at once).
        server.socket = tls.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
    with serving(server):
        yield


def observed(records: list[Record], port: int, kind: str) -> list[str]:
    """Return the values of the observations of ``kind`` on ``port``."""
    return [
        r.value for r in records if isinstance(r, Observation) and r.kind == kind and r.port == port
    ]


def services(records: list[Record], port: int) -> list[Service]:
    """Return the Service records for ``port``."""
    return [r for r in records if isinstance(r, Service) and r.port == port]


def roles_of(records: list[Record], port: int) -> set[str]:
    """Return every role the observations of one port support."""
    return {
        role
        for r in records
        if isinstance(r, Observation) and r.port == port
        for role in roles_from_observation(r)
    }


def detail_of(records: list[Record], port: int, kind: str) -> dict[str, Any]:
    """Return the parsed evidence of the one observation of ``kind`` on ``port``."""
    found = [r for r in records if isinstance(r, Observation) and r.port == port and r.kind == kind]
    assert len(found) == 1
    detail: dict[str, Any] = json.loads(found[0].detail)
    return detail


TINYPROXY_CONF = """\
Port {port}
Listen {address}
Allow 127.0.0.0/8
Allow ::1
PidFile "{root}/tinyproxy.pid"
LogFile "{root}/tinyproxy.log"
LogLevel Connect
MaxClients 20
Timeout 10
"""


@contextmanager
def tinyproxy(
    tmp_path: Path,
    address: str,
    port: int,
    *,
    user: str = "",
    password: str = "",
    connect_ports: tuple[int, ...] = (),
) -> Iterator[Path]:
    """Run tinyproxy in the foreground on address:port with its own config; yield its log.

    ``user``/``password`` demand BasicAuth (407 without them); ``connect_ports``
    limits CONNECT to those ports (tinyproxy answers 403 for any other).
    """
    root = tmp_path / f"tinyproxy-{address.replace(':', '_')}-{port}"
    root.mkdir()
    text = TINYPROXY_CONF.format(port=port, address=address, root=root)
    if user:
        text += f"BasicAuth {user} {password}\n"
    text += "".join(f"ConnectPort {allowed}\n" for allowed in connect_ports)
    conf = root / "tinyproxy.conf"
    conf.write_text(text)
    with process(["tinyproxy", "-d", "-c", str(conf)], address, port):
        yield root / "tinyproxy.log"


class _FakeProxy(socketserver.StreamRequestHandler):
    """Reads one request head, answers it with its server's scripted bytes, then stays open."""

    def handle(self) -> None:
        """Read the head (up to 64 KiB), send the reply, then read and discard until closed.

        With the server's ``close`` set it closes right after the reply instead.
        """
        server: Any = self.server
        self.request.settimeout(10.0)
        try:
            head = b""
            while len(head) < 65536 and (line := self.rfile.readline(8192)) not in (b"", b"\r\n"):
                head += line
            server.requests.append(head.split(b"\r\n", 1)[0].decode("latin-1"))
            self.wfile.write(server.reply)
            self.wfile.flush()
            while not server.close and not server.stop.is_set() and self.request.recv(4096):
                pass
        except OSError:
            return


class _FakeProxyServer(socketserver.ThreadingTCPServer):
    """A threading TCP server for ``_FakeProxy``: the reply it sends and the requests it read."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: str, reply: bytes, close: bool) -> None:
        """Bind a free port of ``address``."""
        self.reply = reply
        self.close = close
        self.requests: list[str] = []
        self.stop = threading.Event()
        super().__init__((address, 0), _FakeProxy)


@contextmanager
def fake_proxy(
    reply: bytes, address: str = "127.0.0.1", *, close: bool = False
) -> Iterator[_FakeProxyServer]:
    """Run a hostile "proxy" that answers every request with ``reply`` and never relays.

    With ``close`` it closes each connection right after its reply, as a web server would.
    """
    server = _FakeProxyServer(address, reply, close)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
