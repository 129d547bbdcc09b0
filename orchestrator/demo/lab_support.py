"""Lab plumbing shared by the demo and the tests: certificates, waiting for and serving servers."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rolecall.orchestrator.errors import RunError


def self_signed(
    directory: Path,
    name: str,
    *,
    address: str = "",
    dns_names: Sequence[str] = (),
    days: int = 30,
) -> tuple[Path, Path]:
    """Write a self-signed certificate (a CA of itself) and its key for name; return their paths.

    With an address or DNS names, the certificate also names them (subject
    alternative names), so a client that verifies against it can connect by them.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    alternatives: list[x509.GeneralName] = [x509.DNSName(dns) for dns in dns_names]
    if address:
        alternatives.append(x509.IPAddress(ipaddress.ip_address(address)))
    if alternatives:
        builder = builder.add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def server_tls(directory: Path, name: str) -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate for name."""
    cert, key = self_signed(directory, name)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def wait_listening(address: str, port: int, timeout: float = 5.0) -> None:
    """Return once address:port accepts connections; RunError after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RunError(f"nothing listens on {address}:{port} after {timeout:g} s")


@contextmanager
def serving(server: socketserver.BaseServer) -> Iterator[None]:
    """Serve in a background thread until the block ends, then shut down and close."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
