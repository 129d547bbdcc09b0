"""Real traffic recorded on loopback for the pcap benchmark, one recording per workload.

Each recorder runs real peers on 127.0.192.0/24 while tcpdump records them:

- ``mail-heavy``: smtplib to aiosmtpd, three messages of 4-150 kB a session, a quarter
  of the sessions through microsocks (SOCKS5);
- ``mail-gateway``: short sessions of two to five messages of 1-4 kB, a fifth of them
  through microsocks and a tenth sent with CHUNKING (BDAT) to an Exim that offers it:
  nearly every packet is mail and records are dense;
- ``mixed``: HTTPS downloads (a Python TLS server, clients naming a server by SNI),
  plain HTTP (http.server and http.client), DNS lookups (a UDP responder on port 53 answering
  A queries) and one short SMTP session, about 1% of the packets.

Recordings are kept in ``cache()`` (under /tmp, keyed by workload and ``VERSION``), so
a second run of the benchmark does not record again.
"""

from __future__ import annotations

import http.client
import http.server
import random
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dpkt

VERSION = 3
NET = "127.0.192.0/24"
SERVER, PROXY, WEB, DNS = "127.0.192.2", "127.0.192.3", "127.0.192.4", "127.0.192.5"
CHUNKING_SERVER = "127.0.192.6"
# A short note, a typical mail, one with an attachment: about 65 kB on average, which is
# what mail measured in the wild averages (most packets are then message data).
HEAVY_SIZES = (4_000, 40_000, 150_000)


def cache() -> Path:
    """The folder recordings are kept in between runs."""
    folder = Path(tempfile.gettempdir()) / "rolecall-bench-pcap"
    folder.mkdir(exist_ok=True)
    return folder


def recording(workload: str) -> Path:
    """The recorded capture of ``workload``, recorded now unless cached."""
    path = cache() / f"{workload}-v{VERSION}.pcap"
    if not path.exists():
        partial = path.with_suffix(".partial")
        RECORDERS[workload](partial)
        partial.rename(path)
    return path


def _mail_session(
    source: str,
    server: tuple[str, int],
    via: tuple[str, int] | None,
    sizes: list[int],
    tag: str,
) -> None:
    """One SMTP session from ``source``: EHLO, a message of each size, QUIT."""
    from tests.pcap_helpers import SourcedSMTP, message  # noqa: PLC0415 (bench-time only)

    client = SourcedSMTP(source, via)
    client.connect(*server)
    client.ehlo("bench.example")
    for n, size in enumerate(sizes):
        rcpt = f"user{n}@example.net"
        body = message("a@example.org", rcpt, f"bench {tag} {n}", "The Bat! (v9)", size)
        client.sendmail("a@example.org", [rcpt], body)
    client.quit()


def record_mail_heavy(path: Path) -> None:
    """Large messages: direct sessions and a quarter through SOCKS5."""
    from tests.pcap_helpers import (  # noqa: PLC0415 (test helpers only when recording)
        aiosmtpd_server,
        loopback_capture,
        microsocks,
    )

    with (
        aiosmtpd_server(SERVER) as (host, port, _),
        microsocks(PROXY) as proxy,
        loopback_capture(path, NET),
    ):
        for session in range(40):
            via = proxy if session % 4 == 3 else None
            source = f"127.0.192.{10 + session % 20}"
            _mail_session(source, (host, port), via, list(HEAVY_SIZES), str(session))


def _chunked_session(source: str, server: tuple[str, int], sizes: list[int], tag: str) -> None:
    """One SMTP session from ``source`` sending each message as two BDAT chunks, then QUIT."""
    from tests.pcap_helpers import SourcedSMTP, message  # noqa: PLC0415 (bench-time only)

    client = SourcedSMTP(source)
    client.connect(*server)
    client.ehlo("bench.example")
    assert client.has_extn("chunking"), "the server does not offer CHUNKING"
    for n, size in enumerate(sizes):
        rcpt = f"user{n}@example.net"
        body = message("a@example.org", rcpt, f"bench {tag} {n}", "The Bat! (v9)", size)
        client.mail("a@example.org")
        client.rcpt(rcpt)
        half = len(body) // 2
        for chunk, last in ((body[:half], b""), (body[half:], b" LAST")):
            client.send(b"BDAT %d%s\r\n" % (len(chunk), last) + chunk)
            code, reply = client.getreply()
            assert code == 250, reply
    client.quit()


def record_mail_gateway(path: Path) -> None:
    """Short sessions of 2-5 messages of 1-4 kB: a fifth through SOCKS5, a tenth chunked."""
    from tests.mta_helpers import chunking_exim  # noqa: PLC0415 (test helpers only when recording)
    from tests.pcap_helpers import (  # noqa: PLC0415 (test helpers only when recording)
        aiosmtpd_server,
        loopback_capture,
        microsocks,
    )

    rng = random.Random(21)
    with (
        tempfile.TemporaryDirectory(prefix="rolecall-bench-exim-") as exim_root,
        aiosmtpd_server(SERVER) as (host, port, _),
        chunking_exim(Path(exim_root), CHUNKING_SERVER) as chunking_port,
        microsocks(PROXY) as proxy,
        loopback_capture(path, NET),
    ):
        for session in range(100):
            source = f"127.0.192.{10 + session % 50}"
            sizes = [rng.randrange(1_000, 4_000) for _ in range(rng.randrange(2, 6))]
            if session % 10 == 2:
                _chunked_session(source, (CHUNKING_SERVER, chunking_port), sizes, str(session))
                continue
            via = proxy if session % 5 == 4 else None
            _mail_session(source, (host, port), via, sizes, str(session))


class _Sized(http.server.BaseHTTPRequestHandler):
    """Answers GET /N with N bytes."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        """Send the body the path asks for."""
        size = int(self.path.strip("/") or 0)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        self.wfile.write(random.randbytes(size))

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@contextmanager
def _web_server(context: ssl.SSLContext | None) -> Iterator[int]:
    """An HTTP server on WEB (HTTPS with ``context``); yield its port."""
    server = http.server.ThreadingHTTPServer((WEB, 0), _Sized)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def _certificate(directory: Path) -> ssl.SSLContext:
    """A server context with a self-signed certificate made by openssl."""
    key, cert = directory / "bench.key", directory / "bench.crt"
    if not cert.exists():
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30"),
                *("-subj", "/CN=bench.example", "-keyout", str(key), "-out", str(cert)),
            ],
            check=True,
            capture_output=True,
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def _https_get(source: str, port: int, name: str, size: int) -> None:
    """GET /size over TLS from ``source``, naming ``name`` by SNI."""
    from tests.pcap_helpers import small_mss_socket  # noqa: PLC0415 (bench-time only)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    raw = small_mss_socket(source)
    raw.settimeout(10.0)
    raw.connect((WEB, port))
    conn = http.client.HTTPConnection(name, port)
    conn.sock = context.wrap_socket(raw, server_hostname=name)
    conn.request("GET", f"/{size}", headers={"Host": name, "User-Agent": "Mozilla/5.0 bench"})
    conn.getresponse().read()
    conn.close()


def _http_get(source: str, port: int, size: int) -> None:
    """GET /size over plain HTTP from ``source``."""
    conn = http.client.HTTPConnection(WEB, port, timeout=10, source_address=(source, 0))
    conn.request("GET", f"/{size}", headers={"User-Agent": "bench-updater/1.0"})
    conn.getresponse().read()
    conn.close()


@contextmanager
def _dns_server() -> Iterator[None]:
    """A UDP responder on DNS:53 answering every A query with an address of 192.0.2.0/24."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((DNS, 53))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(2048)
            except TimeoutError:
                continue
            query = dpkt.dns.DNS(data)
            answer = dpkt.dns.DNS.RR(name=query.qd[0].name, type=dpkt.dns.DNS_A, ttl=300, rlen=4)
            answer.rdata = bytes([192, 0, 2, len(query.qd[0].name) % 250 + 1])
            query.qr, query.rcode, query.an = dpkt.dns.DNS_R, dpkt.dns.DNS_RCODE_NOERR, [answer]
            sock.sendto(bytes(query), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        sock.close()


def _dns_lookup(source: str, name: str, ident: int) -> None:
    """Ask DNS for ``name``'s A record from ``source`` and wait for the answer."""
    query = dpkt.dns.DNS(id=ident, qd=[dpkt.dns.DNS.Q(name=name, type=dpkt.dns.DNS_A)])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(5.0)
        sock.sendto(bytes(query), (DNS, 53))
        sock.recvfrom(2048)


def record_mixed(path: Path) -> None:
    """Site traffic: HTTPS downloads, plain HTTP, DNS lookups and one short SMTP session."""
    from tests.pcap_helpers import (  # noqa: PLC0415 (test helpers only when recording)
        aiosmtpd_server,
        loopback_capture,
    )

    rng = random.Random(21)
    context = _certificate(cache())
    with (
        aiosmtpd_server(SERVER) as (host, port, _),
        _web_server(context) as https_port,
        _web_server(None) as http_port,
        _dns_server(),
        loopback_capture(path, NET),
    ):
        for n in range(60):
            source = f"127.0.192.{10 + n % 50}"
            name = f"cdn{n % 17}.example.com"
            _dns_lookup(source, name, n)
            _https_get(source, https_port, name, rng.randrange(5_000, 120_000))
            if n % 3 == 0:
                _dns_lookup(source, f"api{n % 7}.example.org", 1000 + n)
                _http_get(source, http_port, rng.randrange(2_000, 30_000))
        _mail_session("127.0.192.70", (host, port), None, [1_500, 2_500], "mixed")


RECORDERS: dict[str, Callable[[Path], None]] = {
    "mail-heavy": record_mail_heavy,
    "mail-gateway": record_mail_gateway,
    "mixed": record_mixed,
}


def resegment(ts: float, frame: bytes, mss: int = 1448) -> list[tuple[float, bytes]]:
    """Cut a loopback super-packet (GSO) into Ethernet-sized TCP segments, as a wire shows them."""
    eth = dpkt.ethernet.Ethernet(frame)
    ip = eth.data
    if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP):
        return [(ts, frame)]
    tcp = ip.data
    if len(tcp.data) <= mss:
        return [(ts, frame)]
    out = []
    payload = bytes(tcp.data)
    for i in range(0, len(payload), mss):
        seg = dpkt.tcp.TCP(bytes(tcp))
        seg.data = payload[i : i + mss]
        seg.seq = (tcp.seq + i) % (1 << 32)
        seg.sum = 0
        part = dpkt.ip.IP(bytes(ip))
        part.data = seg
        part.len = part.hl * 4 + len(bytes(seg))
        part.sum = 0
        eth_part = dpkt.ethernet.Ethernet(bytes(eth))
        eth_part.data = part
        out.append((ts + i * 1e-7, bytes(eth_part)))
    return out


def replicate(source: Path, target: Path, packets: int) -> tuple[int, float]:
    """Write ``packets`` or more packets: copies of ``source`` in distinct 10.x.y.0/24 nets.

    Returns the packets written and the share of them to or from the SMTP server.
    """
    with source.open("rb") as fh:
        recorded = [seg for ts, frame in dpkt.pcap.Reader(fh) for seg in resegment(ts, frame)]
    servers = {socket.inet_aton(SERVER), socket.inet_aton(CHUNKING_SERVER)}
    smtp = sum(
        frame[12:14] == b"\x08\x00" and not servers.isdisjoint((frame[26:30], frame[30:34]))
        for _, frame in recorded
    )
    first, last = recorded[0][0], recorded[-1][0]
    span = last - first + 1.0
    written = 0
    record_header = struct.Struct("<IIII").pack
    with target.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        copy = 0
        while written < packets:
            net = struct.pack("!BBB", 10, 1 + copy // 250, copy % 250)
            parts = []
            for ts, frame in recorded:
                moved_frame = frame
                if frame[12:14] == b"\x08\x00":
                    moved_frame = frame[:26] + net + frame[29:30] + net + frame[33:]
                moved = ts + copy * span
                sec = int(moved)
                size = len(moved_frame)
                parts.append(record_header(sec, int((moved - sec) * 1e6), size, size))
                parts.append(moved_frame)
            out.write(b"".join(parts))
            written += len(recorded)
            copy += 1
    return written, smtp / len(recorded)
