"""Whether text is an IP address: the only thing the inventory's address columns hold."""

from __future__ import annotations

import ipaddress


def is_ip_address(text: str) -> bool:
    """Whether text is one IPv4 or IPv6 address (a host name or a zone id is not)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return "%" not in text
