"""Every settings object a config asks for, built in one place and checked as it is built.

Derivation (groups, blocklists, thresholds), nmap, the active probes, the mail relay, the geo
lookup and the reader of each ingest kind. The settings types live apart from the scanner and
the mailer, so building them loads neither; each reader and the geo lookup load with the
function that builds them, so that an ingest loads only its own reader.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from rolecall.inventory.derivation.role_rules import ROLES
from rolecall.inventory.matching.blocklist import BlocklistError, read_blocklist
from rolecall.inventory.matching.mailer_signatures import DEFAULT_SIGNATURES
from rolecall.inventory.settings import DeriveSettings, GroupPolicy, GroupSpec, SurgeSettings
from rolecall.orchestrator.config import Config, GroupConfig, config_error
from rolecall.orchestrator.errors import UsageError
from rolecall.probes.active.settings import ProbeSettings
from rolecall.probes.errors import InputError
from rolecall.probes.nmap.settings import NmapSettings
from rolecall.probes.records import Reader
from rolecall.reports.errors import ReportInputError
from rolecall.reports.relay_settings import RelaySettings

if TYPE_CHECKING:
    from rolecall.probes.passive.firewall import FirewallSettings
    from rolecall.reports.geo import GeoLookup


def _group_spec(config: Config, entry: GroupConfig, earlier: set[str]) -> GroupSpec:
    """A group's settings, checked against the role vocabulary and the groups before it."""
    where = f"groups.{entry.name}"
    for key in ("roles", "expected_roles", "forbidden_roles"):
        unknown = sorted(set(getattr(entry, key)) - set(ROLES))
        if unknown:
            raise config_error(config, f"{where}.{key}: {unknown[0]!r} is not a rolecall role")
    missing = sorted(set(entry.exclude_groups) - earlier)
    if missing:
        message = f"{where}.exclude_groups: {missing[0]!r} is not a group declared above"
        raise config_error(config, message)
    if entry.name in earlier:
        raise config_error(config, f"{where}: a group of this name is declared twice")
    if not (entry.networks or entry.addresses or entry.hostnames or entry.roles or entry.ports):
        message = f"{where}: no networks, addresses, hostnames, roles or ports select hosts"
        raise config_error(config, message)
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
        specs.append(_single_addresses(_group_spec(config, entry, {s.name for s in specs})))
    section, past = config.findings, config.history
    blocklist: list[str] = []
    for name in section.blocklists:
        try:
            blocklist.extend(read_blocklist(Path(name)))
        except BlocklistError as exc:
            raise config_error(config, f"findings.blocklists: {exc}") from None
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
        surge=surge_settings(config),
    )


def surge_settings(config: Config) -> SurgeSettings:
    """When a day of a series is a surge ([history]); reads no file."""
    past = config.history
    return SurgeSettings(
        baseline_days=past.surge_baseline_days,
        min_baseline_days=past.surge_min_baseline_days,
        threshold_mads=past.surge_threshold_mads,
        min_increase=past.surge_min_increase,
    )


def nmap_settings(
    config: Config, ports: str | None = None, top_ports: int | None = None
) -> NmapSettings:
    """The nmap settings of a config, with a port list or nmap's top N from the command line."""
    scan = config.scan
    return NmapSettings(
        nmap=scan.nmap,
        ports=ports or scan.ports,
        top_ports=top_ports or 0,
        service_detection=scan.service_detection,
        timing=scan.timing,
        host_timeout=scan.host_timeout,
        max_rate=scan.max_rate,
        max_retries=scan.max_retries,
        skip_host_discovery=scan.skip_host_discovery,
        resolve_names=scan.resolve_names,
    )


def probe_settings(config: Config, probes: Sequence[str] | None = None) -> ProbeSettings:
    """The active-probe settings of a config, with an optional probe list from the command line."""
    section = config.probes
    try:
        return ProbeSettings(
            connect_timeout=section.connect_timeout,
            read_timeout=section.read_timeout,
            banner_timeout=section.banner_timeout,
            host_budget=section.host_budget,
            concurrency=section.concurrency,
            connect_rate=section.connect_rate,
            probes=tuple(section.enabled if probes is None else probes),
            relay_sender=section.relay_sender,
            relay_recipient=section.relay_recipient,
            helo_name=section.helo_name,
            canary_bind=section.canary_bind,
            ftp_anonymous=section.ftp_anonymous,
        )
    except InputError as exc:
        # Probes named on the command line are not the config's.
        message = str(exc).rstrip(".")
        if probes is not None:
            raise UsageError(message) from None
        raise config_error(config, f"probes.enabled: {message}") from None


def relay_settings(config: Config) -> RelaySettings:
    """The relay from [email], the password read from its file when one is named."""
    section = config.email
    password = section.password
    if section.password_file:
        try:
            password = Path(section.password_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            message = f"email.password_file: cannot read {section.password_file}: {why}"
            raise config_error(config, message) from None
    return RelaySettings(
        section.host,
        section.port,
        section.tls,
        section.user,
        password,
        section.timeout,
        section.ca_file,
    )


def geo_lookup(config: Config) -> GeoLookup:
    """The geo lookup the config names (or the built-in data)."""
    from rolecall.reports.geo import GeoLookup  # noqa: PLC0415 - see the module's docstring

    try:
        return GeoLookup([Path(path) for path in config.geo.databases])
    except ReportInputError as exc:
        raise config_error(config, f"geo.databases: {exc}") from None


def reader(config: Config, kind: str) -> Reader:
    """The reader of one ingest kind (pcap, zeek, nmap-xml, firewall) with the config's settings."""
    if kind == "pcap":
        from rolecall.probes.passive.pcap.read import PcapSettings, read_pcap  # noqa: PLC0415

        section = config.pcap
        pcap = PcapSettings(
            idle_timeout=section.idle_timeout,
            capture_socks_password=section.capture_socks_password,
            egress_window=section.egress_window,
        )
        return partial(read_pcap, settings=pcap)
    if kind == "zeek":
        from rolecall.probes.passive.zeek.records import ZeekSettings, read_zeek  # noqa: PLC0415

        return partial(read_zeek, settings=ZeekSettings(keep_passwords=config.zeek.keep_passwords))
    if kind == "firewall":
        from rolecall.probes.passive.firewall import read_firewall  # noqa: PLC0415

        return partial(read_firewall, settings=firewall_settings(config))
    if kind == "nmap-xml":
        from rolecall.probes.nmap.xml import read_nmap_xml_file  # noqa: PLC0415

        return read_nmap_xml_file
    raise ValueError(f"no reader for {kind!r}")


def firewall_settings(config: Config) -> FirewallSettings:
    """The firewall reader's settings: LOG prefixes and the time zone of its timestamps."""
    from rolecall.probes.passive.firewall import FirewallSettings  # noqa: PLC0415

    section = config.firewall
    try:
        return FirewallSettings(
            deny_prefixes=tuple(section.deny_prefixes),
            accept_prefixes=tuple(section.accept_prefixes),
            timezone=section.timezone,
        )
    except ValueError as exc:
        raise config_error(config, f"firewall.timezone: {exc}") from None
