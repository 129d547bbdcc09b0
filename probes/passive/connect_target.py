"""What an HTTP CONNECT request names, read the same way from captures and from Zeek's http.log."""

from __future__ import annotations

import binascii
import ipaddress
from contextlib import suppress
from typing import Final

MAX_FIELD: Final = 255  # longest host or user kept (a DNS name is at most 253)


def connect_target(raw: str) -> tuple[str, int]:
    """Split a CONNECT target (``host:port``, ``[v6]:port``) into host and port (0 if bad).

    An address comes back in canonical form without brackets, a name as written
    (cut at ``MAX_FIELD`` characters).
    """
    if raw.startswith("["):
        close = raw.find("]")
        host, rest = (raw[1:close], raw[close + 1 :]) if close > 0 else (raw[1:], "")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = raw.rpartition(":")
        if not host:
            host, port = raw, ""
    host = host[:MAX_FIELD]
    with suppress(ValueError):
        host = str(ipaddress.ip_address(host))
    valid = port.isascii() and port.isdigit() and len(port) <= 5 and int(port) <= 65535
    return host, int(port) if valid else 0


def basic_credentials(value: bytes) -> tuple[bytes, bytes]:
    """The user and password of a ``Basic`` authorization header value, or (b"", b"")."""
    scheme, _, token = value.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return b"", b""
    try:
        decoded = binascii.a2b_base64(token.strip())
    except binascii.Error:
        return b"", b""
    user, _, password = decoded.partition(b":")
    return user[:MAX_FIELD], password[:MAX_FIELD]


def credentials_given(value: bytes) -> tuple[bytes, bytes]:
    """The user and password a ``Proxy-Authorization`` value gives; never an empty user.

    Basic names its user; any other scheme (NTLM, Negotiate, Digest, Bearer ...)
    or a Basic token whose user cannot be read still shows that credentials were
    given: the user is then the scheme in parentheses, e.g. ``(NTLM)``.
    """
    user, password = basic_credentials(value)
    if user:
        return user, password
    scheme = value.strip().partition(b" ")[0].strip()[:32] or b"unknown"
    return b"(" + scheme + b")", b""


def connect_outcome(status: int) -> str:
    """The value of a proxy's http-connect observation for a reply status."""
    if 200 <= status < 300:
        return "granted"
    return "auth-required" if status == 407 else "refused"
