"""Asset groups: membership from config (networks, addresses, names, roles, ports) and queries."""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

from sqlalchemy import Connection, delete, exists, func, or_, select

from rolecall.inventory.matching.address_set import AddressSet
from rolecall.inventory.settings import GroupSpec
from rolecall.inventory.sql.bulk import BulkStatement
from rolecall.inventory.sql.in_lists import in_slices
from rolecall.inventory.tables import (
    ASSET_GROUP_TABLE,
    ASSET_TABLE,
    HOSTNAME_TABLE,
    ROLE_TABLE,
    SERVICE_TABLE,
)
from rolecall.inventory.text_order import by_code_point

UNGROUPED: Final = "ungrouped"
"""The name the mail-client query gives hosts that are in no configured group."""


@dataclass(frozen=True)
class GroupMailClients:
    """How many hosts of a group send SMTP, and which."""

    group: str
    count: int
    addresses: list[str]


@dataclass
class HostFacts:
    """What group rules look at for one address."""

    address: str
    roles: set[str] = field(default_factory=set)
    ports: set[str] = field(default_factory=set)
    hostnames: set[str] = field(default_factory=set)


def _port_matches(wanted: str, ports: set[str]) -> bool:
    """Whether "25" (any transport) or "53/udp" is among a host's "port/transport" ports."""
    if "/" in wanted:
        return wanted in ports
    return any(port.partition("/")[0] == wanted for port in ports)


def _in_networks(address: str, networks: tuple[str, ...]) -> bool:
    """Whether an address lies in any of the networks."""
    return bool(networks) and address in _network_set(networks)


@lru_cache(maxsize=256)
def _network_set(networks: tuple[str, ...]) -> AddressSet:
    """A group's networks as a set built once, not parsed again for every host."""
    return AddressSet(networks)


def _selected(spec: GroupSpec, host: HostFacts) -> bool:
    """Whether a host meets a group's positive criteria (all given criteria must hold)."""
    static = spec.networks or spec.addresses or spec.hostnames
    if static:
        by_static = (
            _in_networks(host.address, spec.networks)
            or host.address in spec.addresses
            or any(
                fnmatch.fnmatchcase(name.lower(), pattern.lower())
                for name in host.hostnames
                for pattern in spec.hostnames
            )
        )
        if not by_static:
            return False
    if not set(spec.roles) <= host.roles:
        return False
    if not all(_port_matches(port, host.ports) for port in spec.ports):
        return False
    return bool(static or spec.roles or spec.ports)


def groups_for(host: HostFacts, specs: Sequence[GroupSpec]) -> list[str]:
    """The groups a host belongs to, in declaration order (exclusions see earlier groups)."""
    member: list[str] = []
    for spec in specs:
        if not _selected(spec, host):
            continue
        if _in_networks(host.address, spec.exclude_networks):
            continue
        if any(name in member for name in spec.exclude_groups):
            continue
        member.append(spec.name)
    return member


def host_facts(
    connection: Connection, addresses: Sequence[str], everything: bool = False
) -> dict[str, HostFacts]:
    """Roles, open ports and names of the given addresses.

    ``everything``: the addresses are every asset's, so the tables are read whole
    (one scan each, not an index lookup per address).
    """
    facts = {address: HostFacts(address) for address in addresses}
    role, service, hostname = ROLE_TABLE, SERVICE_TABLE, HOSTNAME_TABLE
    all_roles = select(role.c.address, role.c.role)
    all_ports = select(service.c.address, service.c.port, service.c.transport)
    all_names = select(hostname.c.address, hostname.c.name)
    chunks: list[Sequence[str] | None] = [None] if everything else list(in_slices(addresses))
    for chunk in chunks:
        roles, ports, names = all_roles, all_ports, all_names
        if chunk is not None:
            roles = roles.where(role.c.address.in_(chunk))
            ports = ports.where(service.c.address.in_(chunk))
            names = names.where(hostname.c.address.in_(chunk))
        for address, name in connection.execute(roles):
            if address in facts:
                facts[address].roles.add(name)
        for address, port, transport in connection.execute(ports):
            if address in facts:
                facts[address].ports.add(f"{port}/{transport}")
        for address, name in connection.execute(names):
            if address in facts:
                facts[address].hostnames.add(name)
    return facts


def update_groups(
    connection: Connection,
    addresses: Sequence[str],
    specs: Sequence[GroupSpec],
    everything: bool = False,
) -> None:
    """Recompute the group memberships of the given addresses (``everything``: of every
    asset, which the addresses then are)."""
    table = ASSET_GROUP_TABLE
    if everything:
        connection.execute(delete(table))
    for chunk in [] if everything else in_slices(addresses):
        connection.execute(delete(table).where(table.c.address.in_(chunk)))
    if not specs:
        return
    facts = host_facts(connection, addresses, everything)
    rows = [
        {"address": address, "name": name}
        for address, host in facts.items()
        for name in groups_for(host, specs)
    ]
    # By COPY on PostgreSQL: a full derivation writes a membership for nearly every host.
    BulkStatement(table.insert(), copy_into=table).execute(connection, rows)


def groups_of(connection: Connection) -> dict[str, list[str]]:
    """Address -> the names of the groups it belongs to (sorted); ungrouped addresses absent."""
    table = ASSET_GROUP_TABLE
    found: dict[str, list[str]] = defaultdict(list)
    for row in connection.execute(
        select(table.c.address, table.c.name).order_by(
            by_code_point(table.c.address), by_code_point(table.c.name)
        )
    ):
        found[row.address].append(row.name)
    return dict(found)


def groups_of_addresses(connection: Connection, addresses: Sequence[str]) -> dict[str, list[str]]:
    """Like groups_of, for the given addresses only."""
    table = ASSET_GROUP_TABLE
    found: dict[str, list[str]] = defaultdict(list)
    for chunk in in_slices(addresses):
        for row in connection.execute(
            select(table.c.address, table.c.name).where(table.c.address.in_(chunk))
        ):
            found[row.address].append(row.name)
    return {address: sorted(names) for address, names in found.items()}


def mail_clients_by_group(connection: Connection) -> list[GroupMailClients]:
    """Per group, the hosts seen sending SMTP (hosts in no group under "ungrouped")."""
    role = ROLE_TABLE
    clients = sorted(
        {
            row.address
            for row in connection.execute(
                select(role.c.address).where(role.c.role == "smtp-client").distinct()
            )
        }
    )
    member = groups_of_addresses(connection, clients)
    by_group: dict[str, list[str]] = defaultdict(list)
    for address in clients:
        for name in member.get(address, [UNGROUPED]):
            by_group[name].append(address)
    return sorted(
        (GroupMailClients(name, len(hosts), hosts) for name, hosts in by_group.items()),
        key=lambda entry: (-entry.count, entry.group),
    )


def mail_client_groups(connection: Connection, limit: int) -> list[GroupMailClients]:
    """Like mail_clients_by_group, each group's hosts cut to the first limit (code point order).

    The database counts each group's clients and lists only the hosts shown.
    """
    role, member = ROLE_TABLE, ASSET_GROUP_TABLE
    clients = select(role.c.address).where(role.c.role == "smtp-client")
    counted = (
        select(member.c.name, func.count())
        .where(member.c.address.in_(clients))
        .group_by(member.c.name)
    )
    counts: defaultdict[str, int] = defaultdict(int)
    for name, count in connection.execute(counted):
        counts[str(name)] += int(count)
    # NOT EXISTS, not NOT IN: PostgreSQL plans it as an anti-join whatever the tables' sizes.
    alone = ~exists().where(member.c.address == role.c.address)
    ungrouped = connection.execute(
        select(func.count(role.c.address.distinct())).where(role.c.role == "smtp-client", alone)
    ).scalar_one()
    if ungrouped:
        counts[UNGROUPED] += int(ungrouped)
    found = []
    for name, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        held = exists().where(member.c.address == role.c.address, member.c.name == name)
        listed = (
            select(role.c.address)
            .where(role.c.role == "smtp-client", or_(held, alone) if name == UNGROUPED else held)
            # GROUP BY, not DISTINCT: PostgreSQL orders DISTINCT rows only by what they select.
            .group_by(role.c.address)
            .order_by(by_code_point(role.c.address))
            .limit(limit)
        )
        found.append(GroupMailClients(name, count, list(connection.scalars(listed))))
    return found


def group_sizes(connection: Connection) -> dict[str, int]:
    """Group name -> how many hosts it holds; hosts in no group are counted under "ungrouped"."""
    table, asset = ASSET_GROUP_TABLE, ASSET_TABLE
    sizes = {
        row.name: int(row.members)
        for row in connection.execute(
            select(table.c.name, func.count().label("members")).group_by(table.c.name)
        )
    }
    ungrouped = connection.execute(
        select(func.count()).where(asset.c.address.not_in(select(table.c.address)))
    ).scalar()
    sizes[UNGROUPED] = int(ungrouped or 0)
    return sizes
