"""Misbehaving peers for the probes' robustness tests: a tarpit, a garbage talker, a mute port,
and a scripted hostile SMTP (or FTP) server whose replies do not match the commands."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


class _Tarpit(socketserver.BaseRequestHandler):
    """Drips one byte per second, forever (until the server stops)."""

    def handle(self) -> None:
        """Send "2", then a byte a second, never a whole line."""
        stop: threading.Event = self.server.stop  # type: ignore[attr-defined]
        # The first byte at once: a probe's short banner wait sees it however loaded the
        # machine is, and what follows never makes a line.
        while True:
            try:
                self.request.sendall(b"2")
            except OSError:
                return
            if stop.wait(1.0):
                return


class _Garbage(socketserver.BaseRequestHandler):
    """Answers anything with bytes no protocol uses, then waits and repeats."""

    def handle(self) -> None:
        """Send garbage on connect and after every read."""
        self.request.settimeout(3.0)
        try:
            self.request.sendall(b"\x8f\x00garbage\xfe\xff??\r\n")
            while self.request.recv(4096):
                self.request.sendall(b"\xde\xad\xbe\xef nonsense\r\n")
        except OSError:
            return


class _Silent(socketserver.BaseRequestHandler):
    """Accepts and never says a word."""

    def handle(self) -> None:
        """Read and discard until the peer leaves or the server stops."""
        stop: threading.Event = self.server.stop  # type: ignore[attr-defined]
        self.request.settimeout(0.2)
        while not stop.is_set():
            try:
                if not self.request.recv(4096):
                    return
            except TimeoutError:
                continue
            except OSError:
                return


class _Server(socketserver.ThreadingTCPServer):
    """A threading TCP server whose handlers can see a stop event."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[socketserver.BaseRequestHandler]):
        """Bind and prepare the stop event."""
        self.stop = threading.Event()
        super().__init__(address, handler)


BAD_PEERS: dict[str, type[socketserver.BaseRequestHandler]] = {
    "tarpit": _Tarpit,
    "garbage": _Garbage,
    "silent": _Silent,
}


@contextmanager
def bad_peer(kind: str, address: str, port: int) -> Iterator[None]:
    """Run a tarpit, garbage-speaking or silent TCP server on address:port."""
    server = _Server((address, port), BAD_PEERS[kind])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()


@dataclass
class Script:
    """What a hostile line-protocol server says: a greeting, then a reply per command verb."""

    greeting: bytes = b"220 hostile.test ESMTP\r\n"
    replies: dict[str, bytes] = field(default_factory=dict)
    """Bytes sent for a command verb (upper case); other verbs get ``otherwise``."""
    otherwise: bytes = b"250 ok\r\n"
    received: list[str] = field(default_factory=list)
    """Every command verb the server read, in order (DATA must never be among them)."""


class _Scripted(socketserver.StreamRequestHandler):
    """Greets and answers each command line as its server's ``Script`` says."""

    def handle(self) -> None:
        """Send the greeting, then for each line the scripted reply; stop after QUIT."""
        script: Script = self.server.script  # type: ignore[attr-defined]
        self.request.settimeout(5.0)
        try:
            self.wfile.write(script.greeting)
            while line := self.rfile.readline(4096):
                verb = line.split(b" ", 1)[0].split(b":", 1)[0].strip().upper().decode("ascii")
                script.received.append(verb)
                if verb == "QUIT":
                    self.wfile.write(b"221 bye\r\n")
                    return
                self.wfile.write(script.replies.get(verb, script.otherwise))
        except (OSError, UnicodeDecodeError):
            return


@contextmanager
def scripted_server(script: Script, address: str = "127.0.0.1") -> Iterator[int]:
    """Run a hostile server following ``script`` on a free port of ``address``; yield the port."""
    server = _Server((address, 0), _Scripted)
    server.script = script  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
