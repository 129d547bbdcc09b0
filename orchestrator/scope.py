"""The scope: which networks may be probed. Every probe's targets pass through here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import netaddr

from rolecall.orchestrator.config import (
    MAPPED_IPV4,
    MAX_IPV6_SWEEP,
    NAT64_WELL_KNOWN,
    ScopeConfig,
    is_wide,
)
from rolecall.orchestrator.errors import UsageError
from rolecall.probes.gate import OutOfScopeError


def parse_target(text: str) -> netaddr.IPNetwork:
    """Parse a command-line target: an address or CIDR network, nothing else."""
    try:
        network = netaddr.IPNetwork(text, flags=netaddr.NOHOST).cidr
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise UsageError(f"target {text!r} is not an address or CIDR network") from None
    if network.version == 6 and network in MAPPED_IPV4:
        raise UsageError(
            f"target {text!r} is IPv4 written as IPv6 (::ffff:a.b.c.d): give IPv4 as IPv4"
        )
    # A wider target holding ::ffff:0:0/96 (::/0) is judged by the scope; those addresses
    # are never swept (max_ipv6_sweep >= 104) nor admitted.
    return network


def nat64_spellings(networks: Iterable[str]) -> list[netaddr.IPNetwork]:
    """Return the well-known NAT64 spelling (64:ff9b::a.b.c.d, RFC 6052) of each IPv4 network.

    A local-use prefix in 64:ff9b:1::/48 (RFC 8215) embeds IPv4 as its operator
    chose, so its spellings cannot be known here: [scope] exclude must name them.
    """
    spellings = []
    for text in networks:
        network = netaddr.IPNetwork(text)
        if network.version == 4:
            value = NAT64_WELL_KNOWN.value | network.value
            spellings.append(netaddr.IPNetwork((value, network.prefixlen + 96), version=6))
    return spellings


LOOPBACK = netaddr.IPSet(["127.0.0.0/8", "::1/128"])


@dataclass(frozen=True)
class ScanPlan:
    """What a scan takes: the addresses it sweeps, and IPv6 prefixes too wide to sweep."""

    sweep: netaddr.IPSet
    unswept: tuple[netaddr.IPNetwork, ...] = ()
    max_ipv6_sweep: int = MAX_IPV6_SWEEP

    def unswept_notice(self, network: netaddr.IPNetwork, known: int) -> str:
        """The line saying a prefix is not swept and how many known addresses it gave."""
        why = f"scan: {network} is wider than /{self.max_ipv6_sweep} (scan.max_ipv6_sweep)"
        if not known:
            return f"{why} and the inventory knows no address in it: nothing to scan there"
        held = "1 address" if known == 1 else f"{known} addresses"
        return f"{why}, so it is not swept: scanning the {held} in it the inventory knows"


def wide_scope_notice(config: ScopeConfig) -> str:
    """The sentence saying which confirmed networks of [scope] allow are wide ("" if none)."""
    wide = [network for network in config.allow if is_wide(network)]
    if not wide:
        return ""
    return f"scope: allow_wide is set, so the scope takes in all of {', '.join(wide)}"


@dataclass(frozen=True)
class Scope:
    """Allowed networks minus excluded ones; admit() is the one gate probes pass."""

    allowed: netaddr.IPSet
    excluded: netaddr.IPSet
    from_command_line: bool = False

    @classmethod
    def from_config(cls, config: ScopeConfig, targets: Sequence[netaddr.IPNetwork] = ()) -> Scope:
        """Build the run's scope; with none configured, the explicit targets on this machine.

        Without `[scope] allow` nobody has said which networks are theirs to probe,
        so only loopback targets (this machine) may stand in for a scope.
        """
        # An excluded IPv4 network stays excluded when reached through NAT64.
        excluded = netaddr.IPSet(config.exclude) | netaddr.IPSet(nat64_spellings(config.exclude))
        if config.allow:
            return cls(netaddr.IPSet(config.allow), excluded)
        own = netaddr.IPSet(targets) & LOOPBACK
        return cls(own, excluded, from_command_line=bool(targets))

    def admit(self, address: str) -> None:
        """Return if address may be probed, else raise OutOfScopeError."""
        try:
            ip = netaddr.IPAddress(address)
        except (netaddr.AddrFormatError, ValueError):
            raise OutOfScopeError(f"{address!r} is not an address") from None
        if ip.version == 6 and ip in MAPPED_IPV4:
            raise OutOfScopeError(f"{address} is IPv4 written as IPv6: not probed in that form")
        if ip not in self.allowed or ip in self.excluded:
            raise OutOfScopeError(f"{address} is outside the configured scope")

    def admit_network(self, network: str) -> None:
        """Return if every address of network may be probed, else raise OutOfScopeError."""
        wanted = netaddr.IPSet([parse_target(network)])
        if wanted - self.allowed or wanted & self.excluded or MAPPED_IPV4 in wanted:
            raise OutOfScopeError(f"network {network} is not wholly inside the configured scope")

    def plan(
        self,
        targets: Sequence[netaddr.IPNetwork],
        max_addresses: int,
        max_ipv6_sweep: int = MAX_IPV6_SWEEP,
    ) -> ScanPlan:
        """Return what to scan: targets minus exclusions; refuse any outside scope.

        An IPv6 target wider than max_ipv6_sweep is not swept (ScanPlan.unswept): only
        the addresses in it that the inventory knows are scanned, see with_known().
        """
        for target in targets:
            outside = netaddr.IPSet([target]) - self.allowed
            if outside:
                first = next(iter(outside.iter_cidrs()))
                if self.from_command_line:
                    raise OutOfScopeError(
                        f"target {target} is not on this machine and no scope is configured:"
                        " add the networks you may probe to [scope] allow"
                    )
                raise OutOfScopeError(
                    f"target {target} is outside the configured scope ({first} is not allowed)"
                )
        unswept = tuple(t for t in targets if t.version == 6 and t.prefixlen < max_ipv6_sweep)
        swept = [target for target in targets if target not in unswept]
        wanted = netaddr.IPSet(swept) - self.excluded
        _within(wanted.size, max_addresses)
        return ScanPlan(wanted, unswept, max_ipv6_sweep)

    def with_known(
        self, plan: ScanPlan, known: Iterable[str], max_addresses: int
    ) -> tuple[netaddr.IPSet, list[tuple[netaddr.IPNetwork, int]]]:
        """The plan's addresses plus the known ones inside its unswept prefixes (not excluded).

        Also returns, for each unswept prefix, how many known addresses it gave.
        """
        taken = {network: netaddr.IPSet() for network in plan.unswept}
        for text in known:
            try:
                ip = netaddr.IPAddress(text)
            except (netaddr.AddrFormatError, ValueError, TypeError):
                continue  # a name or damaged value in an address column is no target
            if ip.version != 6 or ip in self.excluded or ip in MAPPED_IPV4:
                continue
            for network, addresses in taken.items():
                if ip in network:
                    addresses.add(ip)
        addresses = plan.sweep.copy()
        for found in taken.values():
            addresses |= found
        _within(addresses.size, max_addresses)
        return addresses, [(network, found.size) for network, found in taken.items()]


def _within(size: int, max_addresses: int) -> None:
    """Refuse a scan of more than max_addresses addresses."""
    if size > max_addresses:
        raise UsageError(
            f"the targets hold {size} addresses, more than scope.max_addresses"
            f" ({max_addresses}); scan smaller networks or raise the limit"
        )
