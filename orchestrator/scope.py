"""The scope: which networks may be probed. Every probe's targets pass through here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import netaddr

from rolecall.orchestrator.config import MAPPED_IPV4, ScopeConfig, is_wide, mapped_ipv4
from rolecall.orchestrator.errors import UsageError
from rolecall.probes.gate import OutOfScopeError


def parse_target(text: str) -> netaddr.IPNetwork:
    """Parse a command-line target: an address or CIDR network, nothing else."""
    try:
        network = netaddr.IPNetwork(text, flags=netaddr.NOHOST).cidr
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise UsageError(f"target {text!r} is not an address or CIDR network") from None
    if mapped_ipv4(network):
        raise UsageError(
            f"target {text!r} takes in IPv4 written as IPv6 (::ffff:a.b.c.d): give IPv4 as IPv4"
        )
    return network


LOOPBACK = netaddr.IPSet(["127.0.0.0/8", "::1/128"])


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
        excluded = netaddr.IPSet(config.exclude)
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
        if wanted - self.allowed or wanted & self.excluded:
            raise OutOfScopeError(f"network {network} is not wholly inside the configured scope")

    def plan(self, targets: Sequence[netaddr.IPNetwork], max_addresses: int) -> netaddr.IPSet:
        """Return the addresses to scan: targets minus exclusions; refuse any outside scope."""
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
        wanted = netaddr.IPSet(targets) - self.excluded
        if wanted.size > max_addresses:
            raise UsageError(
                f"the targets hold {wanted.size} addresses, more than scope.max_addresses"
                f" ({max_addresses}); scan smaller networks or raise the limit"
            )
        return wanted
