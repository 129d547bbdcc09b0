"""RFC 5424 syslog messages, and their framing for UDP (RFC 5426) and TCP/TLS (RFC 6587/5425)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from rolecall.alerts.formats.controls import visible

FACILITIES: Final = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
    "uucp", "cron", "authpriv", "ftp", "ntp", "security", "console", "solaris-cron",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
)  # fmt: skip
"""Facility names in code order (RFC 5424 table 1; 13-15 as syslog implementations name them)."""

SEVERITY_CODES: Final = {"high": 2, "medium": 4, "low": 5, "info": 6}
"""A finding's severity as a syslog severity: critical, warning, notice, informational."""

UDP_LIMIT: Final = 8192
"""Bytes in one UDP datagram at most: rsyslog's default message size, safe on every receiver
we know of; longer messages are cut (RFC 5426 lets a sender truncate)."""

BOM: Final = b"\xef\xbb\xbf"
NIL: Final = "-"
SD_ESCAPES: Final = str.maketrans({"\\": "\\\\", '"': '\\"', "]": "\\]"})
NAME_CHARS: Final = re.compile(r"[^\x21-\x7e]")
SD_NAME_CHARS: Final = re.compile(r'[^\x21-\x7e]|[= \]"]')


@dataclass(frozen=True)
class Header:
    """The header fields of a message, as the sender knows them."""

    facility: str
    hostname: str
    app_name: str
    procid: str
    msgid: str


def header_token(text: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, at most limit characters, else "-"."""
    token = NAME_CHARS.sub("_", text)[:limit]
    return token or NIL


def sd_param_value(text: str) -> str:
    """An SD-PARAM value: `"`, `\\` and `]` escaped; controls shown as visible symbols."""
    return visible(text).translate(SD_ESCAPES)


def structured_data(sd_id: str, params: Mapping[str, str]) -> str:
    """One SD-ELEMENT with its parameters; names are checked, values escaped."""
    for name in (sd_id, *params):
        if not name or len(name) > 32 or SD_NAME_CHARS.search(name):
            raise ValueError(f"not an RFC 5424 SD name: {name!r}")
    body = "".join(f' {name}="{sd_param_value(value)}"' for name, value in params.items())
    return f"[{sd_id}{body}]"


def timestamp(moment: datetime) -> str:
    """An RFC 3339 timestamp in UTC with microseconds, as RFC 5424 allows at most."""
    utc = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def priority(facility: str, severity: str) -> int:
    """PRI: facility code times 8 plus the syslog severity of the finding's severity."""
    return FACILITIES.index(facility) * 8 + SEVERITY_CODES.get(severity, 6)


def message(
    header: Header,
    severity: str,
    at: datetime,
    elements: Sequence[str],
    text: str,
    *,
    bom: bool = False,
) -> bytes:
    """One RFC 5424 message; MSG is UTF-8, with a BOM when asked (MSG-UTF8) or plain."""
    fields = [
        f"<{priority(header.facility, severity)}>1",
        timestamp(at),
        header_token(header.hostname, 255),
        header_token(header.app_name, 48),
        header_token(header.procid, 128),
        header_token(header.msgid, 32),
    ]
    head = " ".join(fields).encode("ascii")
    sd = ("".join(elements) or NIL).encode("utf-8", "replace")
    body = text.encode("utf-8", "replace")
    return head + b" " + sd + b" " + (BOM + body if bom else body)


def octet_counted(msg: bytes) -> bytes:
    """The message framed for a TCP or TLS stream: its length in octets, a space, the message."""
    return str(len(msg)).encode("ascii") + b" " + msg


def datagram(msg: bytes, limit: int = UDP_LIMIT) -> bytes:
    """The message as one UDP datagram: cut at limit bytes, never inside a UTF-8 character."""
    if len(msg) <= limit:
        return msg
    cut = limit
    while cut > 0 and (msg[cut] & 0xC0) == 0x80:
        cut -= 1
    return msg[:cut]
