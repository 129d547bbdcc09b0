"""Addresses the inventory already knows, for scans of IPv6 prefixes too wide to sweep."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import Connection, select, union

from rolecall.inventory.tables import ASSET_TABLE, HOSTNAME_TABLE


def known_ipv6(connection: Connection) -> Iterator[str]:
    """Every IPv6 address of the asset and hostname tables (captures, Zeek, DNS, nmap XML).

    Only values holding a colon are read; the caller parses them (a value that is not an
    address is no target).
    """
    asset, hostname = ASSET_TABLE, HOSTNAME_TABLE
    query = union(
        select(asset.c.address).where(asset.c.address.contains(":")),
        select(hostname.c.address).where(hostname.c.address.contains(":")),
    )
    yield from connection.execute(query).scalars()
