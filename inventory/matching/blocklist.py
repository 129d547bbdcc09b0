"""Blocklists from files: one address or CIDR per line, comments after # or ; (Spamhaus DROP)."""

from __future__ import annotations

from pathlib import Path

import netaddr

from rolecall.errors import BadInputError


class BlocklistError(BadInputError):
    """A blocklist file that cannot be read; the message names the file and line (exit 2)."""


def parse_blocklist(text: str, where: str) -> list[str]:
    """The networks of a blocklist text, in canonical CIDR form."""
    networks = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].split(";", 1)[0].strip()
        if not entry:
            continue
        token = entry.split()[0]
        try:
            networks.append(str(netaddr.IPNetwork(token, flags=netaddr.NOHOST).cidr))
        except (netaddr.AddrFormatError, ValueError, TypeError):
            raise BlocklistError(
                f"{where}:{number}: {token[:80]!r} is not an address or CIDR network"
            ) from None
    return networks


def read_blocklist(path: Path) -> list[str]:
    """The networks listed in a blocklist file."""
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise BlocklistError(f"cannot read blocklist {path}: {exc.strerror or exc}") from None
    return parse_blocklist(text, str(path))
