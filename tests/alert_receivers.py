"""Real receivers of alerts on loopback: syslog over UDP, TCP and TLS, and an HTTP webhook.

Each runs in threads of the test process and records what arrived; the parsers are the
receiving side's, strict: anything not framed, structured or escaped as the RFCs and CEF say
raises ReceiverError.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal, TypeVar

from rolecall.orchestrator.demo.lab_support import self_signed

HOST = "127.0.0.1"
T = TypeVar("T")


class ReceiverError(AssertionError):
    """What arrived is not what the format allows."""


def tls_server(directory: Path, name: str = "receiver") -> tuple[ssl.SSLContext, Path]:
    """A server TLS context with a fresh certificate for HOST, and the CA file that trusts it."""
    cert, key = self_signed(directory, name, address=HOST, days=2)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context, cert


def wait_until(probe: Callable[[], T | None], timeout: float = 10.0) -> T:
    """The first true answer of probe within timeout; ReceiverError after it."""
    deadline = time.monotonic() + timeout
    while True:
        answer = probe()
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise ReceiverError(f"nothing as expected after {timeout:g} s")
        time.sleep(0.02)


class SyslogReceiver:
    """A syslog receiver on HOST: UDP datagrams, or octet-counted frames over TCP or TLS."""

    def __init__(
        self,
        transport: Literal["udp", "tcp", "tls"],
        *,
        tls: ssl.SSLContext | None = None,
        port: int = 0,
    ) -> None:
        """Listen now (port 0: a free one); with transport tls, tls is the server context."""
        self.transport = transport
        self.messages: list[bytes] = []
        self.errors: list[str] = []
        """Framing errors and refused TLS handshakes, one sentence each."""
        self._tls = tls
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: list[socket.socket] = []
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        self._socket = socket.socket(socket.AF_INET, kind)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((HOST, port))
        self.port: int = self._socket.getsockname()[1]
        self._socket.settimeout(0.1)
        if transport == "udp":
            target: Callable[[], None] = self._receive_datagrams
        else:
            self._socket.listen(16)
            target = self._accept
        self._thread = threading.Thread(target=target, daemon=True)
        self._thread.start()

    def _record(self, message: bytes) -> None:
        """Keep one message as it arrived."""
        with self._lock:
            self.messages.append(message)

    def _receive_datagrams(self) -> None:
        """One message per datagram until stopped."""
        while not self._stopping.is_set():
            try:
                data = self._socket.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self._record(data)

    def _accept(self) -> None:
        """Serve each connection in its own thread until stopped."""
        while not self._stopping.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        """Read octet-counted frames from one connection (after the TLS handshake, for tls)."""
        connection.settimeout(None)
        if self._tls is not None:
            try:
                connection = self._tls.wrap_socket(connection, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                with self._lock:
                    self.errors.append(f"TLS handshake failed: {exc}")
                connection.close()
                return
        with self._lock:
            self._connections.append(connection)
        stream = connection.makefile("rb")
        try:
            while True:
                frame = read_frame(stream.read)
                if frame is None:
                    return
                self._record(frame)
        except (ReceiverError, OSError, ValueError) as exc:
            with self._lock:
                self.errors.append(str(exc))
        finally:
            stream.close()
            connection.close()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[bytes]:
        """The first count messages, once that many arrived; ReceiverError after timeout."""

        def enough() -> list[bytes] | None:
            with self._lock:
                return list(self.messages[:count]) if len(self.messages) >= count else None

        return wait_until(enough, timeout) if count else []

    def stop(self) -> None:
        """Stop listening and hang up every open connection, as a receiver going down does."""
        self._stopping.set()
        self._socket.close()
        with self._lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)


def read_frame(read: Callable[[int], bytes]) -> bytes | None:
    """One octet-counted frame (RFC 6587 3.4.1, RFC 5425 4.3) from a stream; None at its end."""
    digits = b""
    while True:
        octet = read(1)
        if not octet:
            if digits:
                raise ReceiverError(f"stream ended inside a frame length {digits!r}")
            return None
        if octet == b" ":
            break
        if not octet.isdigit() or len(digits) > 9 or (not digits and octet == b"0"):
            raise ReceiverError(f"not an octet-counted frame: length starts {digits + octet!r}")
        digits += octet
    length = int(digits)
    message = read(length)
    if len(message) != length:
        raise ReceiverError(f"stream ended {length - len(message)} octets short of a frame")
    return message


@dataclass(frozen=True)
class SyslogMessage:
    """An RFC 5424 message as the receiver parsed it."""

    priority: int
    timestamp: str
    hostname: str
    app_name: str
    procid: str
    msgid: str
    structured_data: list[tuple[str, dict[str, str]]]
    text: str
    bom: bool


HEADER = re.compile(
    rb"<(\d{1,3})>1 (\S+) ([!-~]{1,255}) ([!-~]{1,48}) ([!-~]{1,128}) ([!-~]{1,32}) "
)
SD_NAME = re.compile(r"[!-~]{1,32}")
TIMESTAMP = re.compile(r"^(-|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d))$")


def parse_syslog(data: bytes) -> SyslogMessage:
    """An RFC 5424 message, strictly: header, SD-ELEMENTs with unescaped values, then MSG."""
    header = HEADER.match(data)
    if header is None:
        raise ReceiverError(f"not an RFC 5424 header: {data[:80]!r}")
    if int(header[1]) > 191 or not TIMESTAMP.match(header[2].decode("ascii")):
        raise ReceiverError(f"bad PRI or TIMESTAMP: {data[:80]!r}")
    rest = data[header.end() :].decode("utf-8")
    elements, rest = _structured_data(rest)
    if rest and not rest.startswith(" "):
        raise ReceiverError(f"no space between STRUCTURED-DATA and MSG: {rest[:40]!r}")
    text = rest[1:]
    bom = text.startswith("\ufeff")
    pri, stamp, hostname, app_name, procid, msgid = (g.decode("ascii") for g in header.groups())
    return SyslogMessage(
        priority=int(pri),
        timestamp=stamp,
        hostname=hostname,
        app_name=app_name,
        procid=procid,
        msgid=msgid,
        structured_data=elements,
        text=text.removeprefix("\ufeff"),
        bom=bom,
    )


def _sd_name(text: str, at: int, stop: str) -> tuple[str, int]:
    """An SD-NAME at position at, ending before one of stop; the name and where it ends."""
    end = at
    while end < len(text) and text[end] not in stop:
        end += 1
    name = text[at:end]
    if not SD_NAME.fullmatch(name) or any(c in name for c in '= ]"'):
        raise ReceiverError(f"not an SD-NAME: {name!r}")
    return name, end


def _structured_data(text: str) -> tuple[list[tuple[str, dict[str, str]]], str]:
    """The SD-ELEMENTs (or "-") at the start of text, values unescaped; and the text after."""
    if text.startswith("-"):
        return [], text[1:]
    elements: list[tuple[str, dict[str, str]]] = []
    at = 0
    while at < len(text) and text[at] == "[":
        sd_id, at = _sd_name(text, at + 1, " ]")
        params: dict[str, str] = {}
        while text[at] == " ":
            name, at = _sd_name(text, at + 1, "=")
            if text[at : at + 2] != '="':
                raise ReceiverError(f"SD-PARAM {name} has no quoted value")
            at += 2
            value: list[str] = []
            while text[at] != '"':
                if text[at] == "\\" and text[at + 1] in '"\\]':
                    value.append(text[at + 1])
                    at += 2
                elif text[at] in '"]':
                    raise ReceiverError(f"unescaped {text[at]!r} in SD-PARAM {name}")
                else:
                    value.append(text[at])
                    at += 1
            params[name] = "".join(value)
            at += 1
        if text[at] != "]":
            raise ReceiverError(f"SD-ELEMENT {sd_id} not closed: {text[at : at + 20]!r}")
        elements.append((sd_id, params))
        at += 1
    if not elements:
        raise ReceiverError(f"STRUCTURED-DATA is neither - nor an element: {text[:40]!r}")
    return elements, text[at:]


CEF_KEY = re.compile(r"[A-Za-z0-9_]+")


def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """A CEF:0 line, strictly: the 7 header fields and the extension, every escape undone."""
    fields: list[str] = []
    current: list[str] = []
    at = 0
    while len(fields) < 7:
        if at >= len(line):
            raise ReceiverError(f"CEF header has {len(fields)} fields, not 7")
        char = line[at]
        if char == "\\":
            if line[at + 1 : at + 2] not in ("\\", "|"):
                raise ReceiverError(f"bad escape in the CEF header at {at}")
            current.append(line[at + 1])
            at += 2
        elif char == "|":
            fields.append("".join(current))
            current = []
            at += 1
        elif char in "\r\n":
            raise ReceiverError("line break in the CEF header")
        else:
            current.append(char)
            at += 1
    if fields[0] != "CEF:0":
        raise ReceiverError(f"not CEF:0 but {fields[0]!r}")
    return fields, _cef_extension(line[at:])


def _cef_extension(text: str) -> dict[str, str]:
    """key=value pairs split at each unescaped "=" (a value's "=" is always escaped)."""
    equals: list[int] = []
    at = 0
    while at < len(text):
        if text[at] == "\\":
            at += 2
            continue
        if text[at] in "\r\n":
            raise ReceiverError("raw line break in the CEF extension")
        if text[at] == "=":
            equals.append(at)
        at += 1
    pairs: dict[str, str] = {}
    starts = []
    for position in equals:
        start = position
        while start > 0 and CEF_KEY.fullmatch(text[start - 1]):
            start -= 1
        if start == position or (start > 0 and text[start - 1] != " "):
            raise ReceiverError(f"unescaped = in a CEF value at {position}")
        starts.append((start, position))
    for index, (start, position) in enumerate(starts):
        end = starts[index + 1][0] - 1 if index + 1 < len(starts) else len(text)
        key = text[start:position]
        if key in pairs:
            raise ReceiverError(f"CEF key {key} twice")
        pairs[key] = _cef_unescape(text[position + 1 : end])
    return pairs


def _cef_unescape(value: str) -> str:
    """A CEF extension value with \\\\, \\=, \\n and \\r undone; any other escape refused."""
    escapes = {"\\": "\\", "=": "=", "n": "\n", "r": "\r"}
    out: list[str] = []
    at = 0
    while at < len(value):
        if value[at] == "\\":
            following = value[at + 1 : at + 2]
            if following not in escapes:
                raise ReceiverError(f"bad escape \\{following} in a CEF value")
            out.append(escapes[following])
            at += 2
        else:
            out.append(value[at])
            at += 1
    return "".join(out)


@dataclass(frozen=True)
class HttpRequest:
    """One request the HTTP receiver took."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        """The body as JSON."""
        return json.loads(self.body)


class HttpReceiver:
    """An HTTP(S) server on HOST that answers `status` to the first `fail_first` POSTs."""

    def __init__(
        self, *, fail_first: int = 0, status: int = 503, tls: ssl.SSLContext | None = None
    ) -> None:
        """Listen now on a free port, in a thread."""
        self.requests: list[HttpRequest] = []
        """The POSTs taken (answered 200), in order."""
        self.attempts = 0
        self.fail_first = fail_first
        self.status = status
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            """Record the POST or refuse it, as the receiver is told."""

            def do_POST(self) -> None:
                """Take or refuse one POST."""
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.attempts += 1
                    failing = receiver.fail_first > 0
                    if failing:
                        receiver.fail_first -= 1
                    else:
                        receiver.requests.append(
                            HttpRequest(self.path, dict(self.headers.items()), body)
                        )
                self.send_response(receiver.status if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                """Keep the test output quiet."""

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port: int = self._server.server_address[1]
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://{HOST}:{self.port}/hook/SECRET-TOKEN"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[HttpRequest]:
        """The first count requests taken, once that many arrived; ReceiverError after timeout."""

        def enough() -> list[HttpRequest] | None:
            with self._lock:
                return list(self.requests[:count]) if len(self.requests) >= count else None

        return wait_until(enough, timeout) if count else []

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
