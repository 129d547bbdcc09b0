"""Values read from input files checked against what their field says they are.

Readers turn a value that is not what its field holds (an address column that is
not an address, a port past 65535, a count the store cannot hold) into a
ValueError naming the field and the value; the value is shown by :func:`quoted`,
so a hostile one is printable and short in the warning that reports it.
"""

from __future__ import annotations

import ipaddress
from typing import Final

MAX_COUNT: Final = (1 << 63) - 1
"""The largest count the store's INTEGER (signed 64-bit) holds."""
_SHOWN: Final = 80  # characters of a bad value shown in a warning


def quoted(value: str) -> str:
    """The value as a printable Python literal, cut to its first 80 characters."""
    if len(value) <= _SHOWN:
        return repr(value)
    return f"{value[:_SHOWN]!r}... ({len(value)} characters)"


def ip_address(raw: str, field: str) -> str:
    """An IPv4 or IPv6 address in canonical (compressed) form; ValueError if it is not one."""
    # ipaddress takes a zone ("fe80::1%eth0", any text after the %): not an address column's.
    if not isinstance(raw, str) or "%" in raw:
        raise ValueError(f"{field} {quoted(str(raw))} is not an IP address")
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        raise ValueError(f"{field} {quoted(raw)} is not an IP address") from None


def port_number(raw: str, field: str) -> int:
    """A port from 0 to 65535 written in ASCII digits; ValueError otherwise."""
    if raw.isascii() and raw.isdigit() and len(raw) <= 5 and int(raw) <= 65535:
        return int(raw)
    raise ValueError(f"{field} {quoted(raw)} is not a port from 0 to 65535")


def count(raw: str, field: str) -> int:
    """A count from 0 to MAX_COUNT written in ASCII digits; ValueError otherwise."""
    if raw.isascii() and raw.isdigit() and len(raw) <= 19 and int(raw) <= MAX_COUNT:
        return int(raw)
    raise ValueError(f"{field} {quoted(raw)} is not a count from 0 to {MAX_COUNT}")
