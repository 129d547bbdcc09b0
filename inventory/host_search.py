"""Finding hosts by what the inventory holds: a network, a name, a subject, a mail address."""

from __future__ import annotations

import heapq
import ipaddress
import socket
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Connection, func, or_, select

from rolecall.inventory.host_view import Bounded, Counted, bounded, listed
from rolecall.inventory.tables import ASSET_TABLE, HOSTNAME_TABLE, SMTP_TABLE
from rolecall.inventory.text_order import by_code_point

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class NamedHost:
    """A host and the name it was found by."""

    address: str
    name: str


def _text_prefix(network: Network) -> str:
    """Text every address of the network starts with, as addresses are stored (compressed).

    IPv4: its whole leading octets with their dots. IPv6: its whole leading hextets up
    to the first zero one, which compression may write as "::" instead.
    """
    if isinstance(network, ipaddress.IPv4Network):
        octets = str(network.network_address).split(".")[: network.prefixlen // 8]
        return "".join(f"{octet}." for octet in octets)
    hextets = network.network_address.exploded.split(":")[: network.prefixlen // 16]
    kept: list[str] = []
    for hextet in hextets:
        if int(hextet, 16) == 0:
            break
        kept.append(f"{int(hextet, 16):x}:")
    return "".join(kept)


def _number(address: str) -> int | None:
    """An address as a number (IPv6 numbers above every IPv4 one), or None if it is not one."""
    try:
        if ":" in address:
            return (1 << 32) + int.from_bytes(socket.inet_pton(socket.AF_INET6, address), "big")
        return int.from_bytes(socket.inet_pton(socket.AF_INET, address), "big")
    except OSError:
        return None


def _addresses_in(connection: Connection, network: Network) -> Iterator[tuple[int, str]]:
    """The known addresses inside a network, each with its number (see _number)."""
    asset = ASSET_TABLE
    stmt = select(asset.c.address)
    prefix = _text_prefix(network)
    if prefix:
        stmt = stmt.where(asset.c.address.startswith(prefix, autoescape=True))
    shift = (1 << 32) if network.version == 6 else 0
    low = shift + int(network.network_address)
    high = shift + int(network.broadcast_address)
    for (address,) in connection.execute(stmt):
        number = _number(address)
        if number is not None and low <= number <= high:
            yield number, address


def known(connection: Connection, address: str) -> bool:
    """Whether the inventory knows the address."""
    asset = ASSET_TABLE
    found = connection.execute(select(asset.c.id).where(asset.c.address == address)).first()
    return found is not None


def in_network(connection: Connection, network: Network, limit: int) -> Bounded[str]:
    """The known addresses inside a network, the first limit in address order, and their number."""
    total = 0

    def counted(found: Iterator[tuple[int, str]]) -> Iterator[tuple[int, str]]:
        """The addresses, counting them on the way."""
        nonlocal total
        for item in found:
            total += 1
            yield item

    # Memory stays bounded by limit however large the network: a heap, not a sort.
    shown = heapq.nsmallest(limit, counted(_addresses_in(connection, network)))
    return bounded([address for _, address in shown], total)


def by_hostname(connection: Connection, text: str, limit: int) -> Bounded[NamedHost]:
    """Hosts with a name containing text (any case): each address with the name that matched."""
    table = HOSTNAME_TABLE
    stmt = (
        select(table.c.address, table.c.name)
        .where(func.lower(table.c.name).contains(text.lower(), autoescape=True))
        # Grouped, not DISTINCT: PostgreSQL sorts a DISTINCT only by what it selects.
        .group_by(table.c.name, table.c.address)
        .order_by(by_code_point(table.c.name), by_code_point(table.c.address))
    )
    return listed(connection, stmt, limit, lambda row: NamedHost(row.address, row.name))


def _clients(connection: Connection, *where: ColumnElement[bool], limit: int) -> Bounded[Counted]:
    """The clients of the mail transactions matching where, with how many each sent."""
    smtp = SMTP_TABLE
    stmt = (
        select(smtp.c.client, func.count().label("n"))
        .where(*where)
        .group_by(smtp.c.client)
        .order_by(func.count().desc(), by_code_point(smtp.c.client))
    )
    return listed(connection, stmt, limit, lambda row: Counted(row.client, int(row.n)))


def by_subject(connection: Connection, text: str, limit: int) -> Bounded[Counted]:
    """The hosts that sent mail whose subject contains text (any case), with message counts."""
    smtp = SMTP_TABLE
    wanted = func.lower(smtp.c.subject).contains(text.lower(), autoescape=True)
    return _clients(connection, wanted, limit=limit)


def by_mail_address(connection: Connection, text: str, limit: int) -> Bounded[Counted]:
    """The hosts that sent mail from or to an address containing text (any case), counted."""
    smtp = SMTP_TABLE
    folded = text.lower()
    wanted = or_(
        func.lower(smtp.c.mail_from).contains(folded, autoescape=True),
        func.lower(smtp.c.rcpt_to).contains(folded, autoescape=True),
    )
    return _clients(connection, wanted, limit=limit)
