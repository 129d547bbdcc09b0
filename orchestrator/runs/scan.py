"""`scan subnet`: scope check, nmap port discovery host by host, stored as it goes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from netaddr import IPNetwork, IPSet

from rolecall.inventory.known_addresses import known_ipv6
from rolecall.inventory.store import Store
from rolecall.orchestrator.config import Config
from rolecall.orchestrator.interrupts import Interrupts, deferred_interrupts
from rolecall.orchestrator.progress import Advance, Reporter
from rolecall.orchestrator.scope import Scope, parse_target, wide_scope_notice
from rolecall.orchestrator.settings import derive_settings, nmap_settings, probe_settings
from rolecall.probes.active.driver import run_probes
from rolecall.probes.active.settings import ProbeSettings
from rolecall.probes.nmap.scan import NmapScanner, chunk_networks
from rolecall.probes.records import Observation, Record
from rolecall.probes.reverse_names import ReverseLookups


@dataclass
class ScanSummary:
    """What a scan found and where it was recorded."""

    run_id: int
    addresses: int
    counts: Counter[str] = field(default_factory=Counter)
    # What was not swept and what was scanned in its place (IPv6 prefixes too wide to sweep).
    notices: list[str] = field(default_factory=list)


def _probe_open_ports(
    records: Sequence[Record], scope: Scope, settings: ProbeSettings, interrupts: Interrupts
) -> list[Record]:
    """Run the active probes on every open TCP port nmap found; none once Ctrl-C is pressed."""
    hints = {
        (record.address, record.port): record.value
        for record in records
        if isinstance(record, Observation)
        and record.kind == "port-open"
        and record.transport == "tcp"
    }
    if not hints:
        return []
    return run_probes(sorted(hints), scope, settings, hints, lambda: interrupts.requested)


def _tally(counts: Counter[str], records: Sequence[Record]) -> None:
    """Count hosts up and open ports among a chunk's records."""
    for record in records:
        if isinstance(record, Observation) and record.kind in {"host-up", "port-open"}:
            counts["hosts_up" if record.kind == "host-up" else "open_ports"] += 1
    counts["records"] += len(records)


def scan_subnets(
    store: Store,
    config: Config,
    targets: Sequence[str],
    reporter: Reporter,
    ports: str | None = None,
    probes: Sequence[str] | None = None,
    top_ports: int | None = None,
) -> ScanSummary:
    """Scan targets within scope and store every result; the run is recorded however it ends.

    An IPv6 target wider than [scan] max_ipv6_sweep is never swept: only the addresses in it
    the inventory knows are scanned, each such target said in one line (and in notices).
    Ctrl-C stops nmap within a second or two; the hosts it finished are stored, then the
    KeyboardInterrupt goes on (the run is recorded as interrupted).
    """
    active = probe_settings(config, probes)
    derivation = derive_settings(config)
    scope, addresses, notices = plan_scan(store, config, targets, reporter)
    settings = nmap_settings(config, ports, top_ports)
    scanner = NmapScanner(settings, scope)
    names = ReverseLookups("scan") if settings.resolve_names else None
    with store.run("scan", " ".join(targets)) as run:
        summary = ScanSummary(run.id, addresses.size, run.counts, notices)
        with (
            deferred_interrupts() as interrupts,
            reporter.task("scanning", addresses.size) as advance,
        ):
            for chunk in chunk_networks(addresses, config.scan.chunk_addresses):
                interrupts.check()
                # Plain output says a line per chunk; a progress bar moves per host.
                per_host = advance if reporter.interactive else None
                found, moved = _scan_chunk(
                    scanner, chunk, summary.counts, per_host, interrupts, names, _keeper(store)
                )
                interrupts.check()
                if active.probes:
                    records = _probe_open_ports(found, scope, active, interrupts)
                    interrupts.check()
                    _store(store, records, summary)
                size = sum(network.size for network in chunk)
                advance(size - moved, f"{summary.counts['open_ports']} open ports")
            if names is not None:
                _store_names(store, names, config.scan.resolve_seconds, summary, interrupts)
        derived = store.derive(derivation)
        summary.counts["roles"] = derived.roles
        summary.counts["findings"] = derived.findings
    return summary


def plan_scan(
    store: Store, config: Config, targets: Sequence[str], reporter: Reporter
) -> tuple[Scope, IPSet, list[str]]:
    """The scope check and the addresses to scan, each notice said; OutOfScopeError if outside."""
    networks = [parse_target(target) for target in targets]
    scope = Scope.from_config(config.scope, networks)
    if wide := wide_scope_notice(config.scope):
        reporter.warn(wide)
    if scope.from_command_line:
        reporter.note(
            "scope: none configured, so this run's scope is the command-line targets "
            + ", ".join(str(network) for network in networks)
        )
    addresses, notices = _addresses(store, config, scope, networks)
    for notice in notices:
        reporter.warn(notice)
    return scope, addresses, notices


def scan_chunk_records(
    config: Config,
    scope: Scope,
    chunk: Sequence[IPNetwork],
    ports: str | None = None,
    probes: Sequence[str] | None = None,
    top_ports: int | None = None,
) -> tuple[list[Record], Counter[str]]:
    """nmap, the active probes and reverse names on one chunk: every record, none stored.

    What a site worker runs for one queued chunk; it stores the records in one go.
    """
    active = probe_settings(config, probes)
    settings = nmap_settings(config, ports, top_ports)
    names = ReverseLookups("scan") if settings.resolve_names else None
    counts: Counter[str] = Counter()
    never = Interrupts()
    records, _ = _scan_chunk(
        NmapScanner(settings, scope), chunk, counts, None, never, names, lambda _found: None
    )
    if active.probes:
        probed = _probe_open_ports(records, scope, active, never)
        _tally(counts, probed)
        records += probed
    if names is not None:
        found = names.collect(config.scan.resolve_seconds, lambda: False)
        _tally(counts, found.names)
        records += found.names
        counts["names"] = len(found.names)
        counts["names_unresolved"] = found.unresolved
    return records, counts


def _keeper(store: Store) -> Callable[[Sequence[Record]], None]:
    """A function storing records at once (a local scan keeps what each chunk found)."""

    def keep(records: Sequence[Record]) -> None:
        with store.writer() as writer:
            writer.add_all(records)

    return keep


def _addresses(
    store: Store, config: Config, scope: Scope, networks: Sequence[IPNetwork]
) -> tuple[IPSet, list[str]]:
    """The addresses to scan, and a line for each IPv6 target too wide to sweep."""
    plan = scope.plan(networks, config.scope.max_addresses, config.scan.max_ipv6_sweep)
    if not plan.unswept:
        return plan.sweep, []
    with store.read("read the addresses the inventory knows") as connection:
        addresses, taken = scope.with_known(
            plan, known_ipv6(connection), config.scope.max_addresses
        )
    return addresses, [plan.unswept_notice(network, known) for network, known in taken]


def _scan_chunk(
    scanner: NmapScanner,
    chunk: Sequence[IPNetwork],
    counts: Counter[str],
    advance: Advance | None,
    interrupts: Interrupts,
    names: ReverseLookups | None,
    keep: Callable[[Sequence[Record]], None],
) -> tuple[list[Record], int]:
    """Run nmap on a chunk, keeping what it found even if stopped; return that and units moved."""
    records: list[Record] = []
    size = sum(network.size for network in chunk)
    moved = hosts = 0

    def move_to(position: int) -> None:
        """Move the bar forward to position within the chunk, never back."""
        nonlocal moved
        if advance is not None and position > moved:
            advance(min(position, size) - moved, f"{counts['open_ports']} open ports")
            moved = min(position, size)

    def heard(share: float) -> None:
        """nmap's share done of the hosts it is scanning now, taken as the chunk's rest."""
        move_to(hosts + int(share * (size - hosts)))

    try:
        for host in scanner.scan(chunk, lambda: interrupts.requested, heard):
            records += host
            _tally(counts, host)
            if names is not None:
                for record in host:
                    if isinstance(record, Observation) and record.kind == "host-up":
                        names.submit(record.address)
            hosts += 1
            move_to(hosts)
    finally:
        # Hosts nmap finished are kept, however the chunk ended.
        keep(records)
    return records, moved


def _store(store: Store, records: Sequence[Record], summary: ScanSummary) -> None:
    """Store records and count them."""
    with store.writer() as writer:
        writer.add_all(records)
    _tally(summary.counts, records)


def _store_names(
    store: Store,
    names: ReverseLookups,
    seconds: float,
    summary: ScanSummary,
    interrupts: Interrupts,
) -> None:
    """Store the names reverse DNS gave within seconds of the scan's end; count the rest."""
    found = names.collect(seconds, lambda: interrupts.requested)
    interrupts.check()
    _store(store, found.names, summary)
    summary.counts["names"] = len(found.names)
    summary.counts["names_unresolved"] = found.unresolved
