"""The demo's client traffic: spam from a web server, mail through a proxy, a refused relay."""

from __future__ import annotations

import smtplib
import socket
import ssl
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

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

MASS_MAILER = "The Bat! (v3.0) Professional"
TIMEOUT = 10.0


@dataclass
class TrafficLog:
    """What the demo's clients did, one line each."""

    lines: list[str] = field(default_factory=list)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    """Read exactly size bytes; RunError if the peer closes first."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise RunError("demo traffic: the SOCKS proxy closed the connection")
        data += chunk
    return data


def socks5_connect(
    source: str, proxy: str, target: tuple[str, int], user: str = "", password: str = ""
) -> socket.socket:
    """A TCP connection from source through the SOCKS5 proxy to target (RunError if refused)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    try:
        sock.bind((source, 0))
        sock.connect((proxy, SOCKS_PORT))
        sock.sendall(b"\x05\x01\x02" if user else b"\x05\x01\x00")
        method = _recv_exact(sock, 2)[1]
        if method == 0x02:
            login = user.encode()
            secret = password.encode()
            sock.sendall(bytes([1, len(login)]) + login + bytes([len(secret)]) + secret)
            if _recv_exact(sock, 2)[1] != 0:
                raise RunError(f"demo traffic: proxy {proxy} refused the credentials")
        elif method != 0x00:
            raise RunError(f"demo traffic: proxy {proxy} wants a password")
        request = b"\x05\x01\x00\x01" + socket.inet_aton(target[0]) + struct.pack("!H", target[1])
        sock.sendall(request)
        reply = _recv_exact(sock, 10)
        if reply[1] != 0:
            raise RunError(f"demo traffic: proxy {proxy} answered CONNECT with {reply[1]}")
    except BaseException:
        sock.close()
        raise
    return sock


class _SourcedSMTP(smtplib.SMTP):
    """smtplib from a chosen loopback source, directly or through a SOCKS5 proxy."""

    def __init__(self, source: str, server: str, port: int, helo: str, proxy: str = "") -> None:
        self.source = source
        self.proxy = proxy
        super().__init__(server, port, local_hostname=helo, timeout=TIMEOUT)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        """Connect from the source, through the proxy when there is one."""
        if self.proxy:
            return socks5_connect(self.source, self.proxy, (host, port))
        return socket.create_connection((host, port), timeout, (self.source, 0))


def message(sender: str, rcpt: str, subject: str, mailer: str) -> EmailMessage:
    """A short mail message with the headers rolecall reads."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = rcpt
    mail["Subject"] = subject
    mail["Date"] = format_datetime(datetime.now(UTC))
    mail["Message-ID"] = make_msgid(domain="lab.example")
    mail["X-Mailer"] = mailer
    mail.set_content(f"{subject}\n\nThis message was sent inside the rolecall demo lab.\n")
    return mail


def spam_from_web_server(lab: LabAddresses, log: TrafficLog) -> None:
    """The web server sends bulk mail with a mass-mailer through the open relay."""
    for number in range(3):
        rcpt = f"victim{number}@example.org"
        with _SourcedSMTP(lab["www"], lab["relay"], SMTP_PORT, "www.lab.example") as client:
            subject = f"Cheap watches, offer {number + 1}"
            client.send_message(message("deals@www.lab.example", rcpt, subject, MASS_MAILER))
    log.lines.append(f"www {lab['www']}: 3 mails with X-Mailer {MASS_MAILER!r} via the open relay")


def mail_through_open_proxy(lab: LabAddresses, log: TrafficLog) -> None:
    """A workstation's mail goes through the open SOCKS proxy to the open relay."""
    source = lab["ws-proxied"]
    with _SourcedSMTP(
        source, lab["relay"], SMTP_PORT, "pc-40.lab.example", proxy=lab["proxy"]
    ) as client:
        mail = message("bob@pc-40.lab.example", "someone@example.org", "Invoice", "Mailer 2.1")
        client.send_message(mail)
    log.lines.append(f"ws-proxied {source}: mail via open proxy {lab['proxy']} to the relay")


def refused_relay_attempt(lab: LabAddresses, log: TrafficLog) -> None:
    """A workstation tries to relay to a foreign domain through the corporate MTA (550)."""
    source = lab["ws-refused"]
    with _SourcedSMTP(source, lab["mx"], SMTP_PORT, "pc-41.lab.example") as client:
        client.ehlo()
        client.mail("carol@pc-41.lab.example")
        code, _ = client.rcpt("target@example.org")
        client.rset()
    if code < 500:
        raise RunError(f"demo traffic: the corporate MTA accepted a foreign recipient ({code})")
    log.lines.append(f"ws-refused {source}: relay through {lab['mx']} refused ({code})")


def authenticated_submission(lab: LabAddresses, log: TrafficLog) -> None:
    """A user submits mail properly: STARTTLS, AUTH, a local recipient."""
    source = lab["ws-user"]
    context = ssl.create_default_context()
    # The lab's certificate is self-signed and made a moment ago: nothing to verify it against.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with _SourcedSMTP(source, lab["submit"], SUBMISSION_PORT, "pc-42.lab.example") as client:
        client.starttls(context=context)
        client.login(DEMO_USER, DEMO_PASSWORD)
        mail = message(f"{DEMO_USER}@{LOCAL_DOMAIN}", f"team@{LOCAL_DOMAIN}", "Minutes", "Mail/16")
        client.send_message(mail)
    log.lines.append(f"ws-user {source}: mail submitted to {lab['submit']} with STARTTLS and AUTH")


def web_browsing(lab: LabAddresses, log: TrafficLog) -> None:
    """A user fetches the intranet page directly and through the password-protected proxy."""
    source = lab["ws-user"]
    with socket.create_connection((lab["www"], WEB_PORT), TIMEOUT, (source, 0)) as sock:
        _http_get(sock, lab["www"])
    with socks5_connect(
        source, lab["authproxy"], (lab["www"], WEB_PORT), DEMO_USER, DEMO_PASSWORD
    ) as sock:
        _http_get(sock, lab["www"])
    try:
        socks5_connect(lab["ws-proxied"], lab["authproxy"], (lab["www"], WEB_PORT)).close()
    except RunError:
        log.lines.append(f"ws-proxied {lab['ws-proxied']}: password proxy refused it without one")
    else:
        raise RunError("demo traffic: the password proxy let a client in without a password")
    log.lines.append(f"ws-user {source}: web page directly and through the password proxy")


def _http_get(sock: socket.socket, host: str) -> None:
    """Send a GET / on an open connection and read the whole answer."""
    sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    while sock.recv(65536):
        pass


def drive_traffic(lab: LabAddresses) -> TrafficLog:
    """Run every client scenario against the running lab; RunError if one goes wrong."""
    log = TrafficLog()
    try:
        spam_from_web_server(lab, log)
        mail_through_open_proxy(lab, log)
        refused_relay_attempt(lab, log)
        authenticated_submission(lab, log)
        web_browsing(lab, log)
    except (smtplib.SMTPException, OSError) as exc:
        raise RunError(f"demo traffic failed: {type(exc).__name__}: {exc}") from None
    return log
