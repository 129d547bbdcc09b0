"""An alert event as an ArcSight Common Event Format (CEF) line, escaped by CEF's rules."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Final

from rolecall import __version__
from rolecall.alerts.event import AlertEvent
from rolecall.alerts.formats.controls import visible

CEF_SEVERITY: Final = {"high": 8, "medium": 5, "low": 3, "info": 0}
"""CEF's 0-10 scale: 0-3 low, 4-6 medium, 7-8 high, 9-10 very high."""

NAME_LIMIT: Final = 512
"""CEF's limit on the header's Name field, in characters."""

HEADER_ESCAPES: Final = str.maketrans({"\\": "\\\\", "|": "\\|"})
VALUE_ESCAPES: Final = str.maketrans({"\\": "\\\\", "=": "\\=", "\n": "\\n", "\r": "\\r"})


def header_field(text: str) -> str:
    """A CEF header field: backslash and pipe escaped, no line breaks or other controls."""
    return visible(text).translate(HEADER_ESCAPES)


def extension_value(text: str) -> str:
    """A CEF extension value: backslash and equals escaped, CR and LF as \\r and \\n."""
    return visible(text, keep="\n\r").translate(VALUE_ESCAPES)


def cef_time(moment: datetime) -> str:
    """A CEF timestamp: milliseconds since the epoch."""
    utc = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return str(int(utc.timestamp() * 1000))


def _address_keys(address: str) -> list[tuple[str, str]]:
    """The source address under CEF's key for its family (src is IPv4 only)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return [("shost", address)]
    if parsed.version == 4:
        return [("src", address)]
    return [("c6a2", address), ("c6a2Label", "Source IPv6 Address")]


def _extensions(event: AlertEvent) -> list[tuple[str, str]]:
    """The extension's keys (CEF dictionary names only) and unescaped values, in order."""
    pairs = [
        ("rt", cef_time(event.at)),
        ("act", event.action),
        *_address_keys(event.address),
        ("start", cef_time(event.first_seen)),
        ("end", cef_time(event.last_seen)),
        ("cat", event.severity),
        ("cn1", str(event.sequence)),
        ("cn1Label", "sequence"),
        ("cs1", event.finding_id),
        ("cs1Label", "findingId"),
        ("cs2", ",".join(event.roles)),
        ("cs2Label", "roles"),
        ("cs3", ",".join(event.groups)),
        ("cs3Label", "groups"),
        ("cs4", ",".join(event.techniques)),
        ("cs4Label", "attackTechniques"),
        ("cs5", " ".join(event.evidence)),
        ("cs5Label", "evidence"),
    ]
    if event.note:
        pairs += [("cs6", event.note), ("cs6Label", "note")]
    pairs.append(("msg", event.summary))
    return pairs


def cef_line(event: AlertEvent) -> str:
    """The event as one CEF:0 line: header fields and extension values escaped, one line."""
    header = "|".join(
        [
            "CEF:0",
            "rolecall",
            "rolecall",
            header_field(__version__),
            header_field(event.rule),
            header_field(event.summary[:NAME_LIMIT]),
            str(CEF_SEVERITY.get(event.severity, 0)),
        ]
    )
    extension = " ".join(f"{key}={extension_value(value)}" for key, value in _extensions(event))
    return f"{header}|{extension}"
