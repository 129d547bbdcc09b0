"""The derivation settings a config asks for: groups checked, blocklists read, thresholds."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from rolecall.inventory.derivation.role_rules import ROLES
from rolecall.inventory.matching.blocklist import BlocklistError, read_blocklist
from rolecall.inventory.matching.mailer_signatures import DEFAULT_SIGNATURES
from rolecall.inventory.settings import DeriveSettings, GroupPolicy, GroupSpec, SurgeSettings
from rolecall.orchestrator.config import Config, GroupConfig
from rolecall.orchestrator.errors import UsageError


def _group_spec(entry: GroupConfig, earlier: set[str]) -> GroupSpec:
    """A group's settings, checked against the role vocabulary and the groups before it."""
    where = f"groups.{entry.name}"
    for key in ("roles", "expected_roles", "forbidden_roles"):
        unknown = sorted(set(getattr(entry, key)) - set(ROLES))
        if unknown:
            raise UsageError(f"{where}.{key}: {unknown[0]!r} is not a rolecall role")
    missing = sorted(set(entry.exclude_groups) - earlier)
    if missing:
        raise UsageError(f"{where}.exclude_groups: {missing[0]!r} is not a group declared above")
    if entry.name in earlier:
        raise UsageError(f"{where}: a group of this name is declared twice")
    if not (entry.networks or entry.addresses or entry.hostnames or entry.roles or entry.ports):
        raise UsageError(f"{where}: no networks, addresses, hostnames, roles or ports select hosts")
    return GroupSpec(
        name=entry.name,
        networks=tuple(entry.networks),
        addresses=tuple(entry.addresses),
        hostnames=tuple(entry.hostnames),
        roles=tuple(entry.roles),
        ports=tuple(entry.ports),
        exclude_networks=tuple(entry.exclude_networks),
        exclude_groups=tuple(entry.exclude_groups),
        policy=GroupPolicy(
            expected_roles=tuple(entry.expected_roles),
            forbidden_roles=tuple(entry.forbidden_roles),
            may_send_mail=entry.may_send_mail,
            mail_relays=tuple(entry.mail_relays),
        ),
    )


def _single_addresses(spec: GroupSpec) -> GroupSpec:
    """Group addresses as plain addresses ("10.0.0.1", not "10.0.0.1/32"); CIDRs become networks."""
    plain = tuple(a.removesuffix("/32").removesuffix("/128") for a in spec.addresses)
    single = tuple(a for a in plain if "/" not in a)
    networks = spec.networks + tuple(a for a in plain if "/" in a)
    return GroupSpec(
        **{**asdict(spec), "addresses": single, "networks": networks, "policy": spec.policy}
    )


def derive_settings(config: Config) -> DeriveSettings:
    """The derivation settings of a config (blocklist files are read here)."""
    specs: list[GroupSpec] = []
    for entry in config.groups:
        specs.append(_single_addresses(_group_spec(entry, {spec.name for spec in specs})))
    section, past = config.findings, config.history
    blocklist: list[str] = []
    for name in section.blocklists:
        try:
            blocklist.extend(read_blocklist(Path(name)))
        except BlocklistError as exc:
            raise UsageError(f"findings.blocklists: {exc}") from None
    return DeriveSettings(
        groups=tuple(specs),
        inside=tuple(config.scope.allow),
        approved_relays=tuple(section.approved_relays),
        mass_mailers=DEFAULT_SIGNATURES + tuple(section.mass_mailers),
        blocklist=tuple(sorted(set(blocklist))),
        workstation_window_days=section.workstation_window_days,
        resolve_after_hours=section.resolve_after_hours,
        new_client_learning_days=section.new_client_learning_days,
        history_retention_days=past.retention_days,
        surge=SurgeSettings(
            baseline_days=past.surge_baseline_days,
            min_baseline_days=past.surge_min_baseline_days,
            threshold_mads=past.surge_threshold_mads,
            min_increase=past.surge_min_increase,
        ),
    )
