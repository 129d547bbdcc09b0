"""`scan subnet`: scope check, nmap port discovery chunk by chunk, stored as it goes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from rolecall.inventory.store import Store
from rolecall.orchestrator.config import Config
from rolecall.orchestrator.interrupts import deferred_interrupts
from rolecall.orchestrator.progress import Reporter
from rolecall.orchestrator.scope import Scope, parse_target
from rolecall.orchestrator.settings import derive_settings, nmap_settings, probe_settings
from rolecall.probes.active.driver import run_probes
from rolecall.probes.active.settings import ProbeSettings
from rolecall.probes.nmap.scan import NmapScanner, chunk_networks
from rolecall.probes.records import Observation, Record


@dataclass
class ScanSummary:
    """What a scan found and where it was recorded."""

    run_id: int
    addresses: int
    counts: Counter[str] = field(default_factory=Counter)


def _probe_open_ports(
    records: Sequence[Record], scope: Scope, settings: ProbeSettings
) -> list[Record]:
    """Run the active probes on every open TCP port nmap found."""
    hints = {
        (record.address, record.port): record.value
        for record in records
        if isinstance(record, Observation)
        and record.kind == "port-open"
        and record.transport == "tcp"
    }
    if not hints:
        return []
    return run_probes(sorted(hints), scope, settings, hints)


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
) -> ScanSummary:
    """Scan targets within scope and store every result; the run is recorded however it ends."""
    networks = [parse_target(target) for target in targets]
    active = probe_settings(config, probes)
    derivation = derive_settings(config)
    scope = Scope.from_config(config.scope, networks)
    if scope.from_command_line:
        reporter.note(
            "scope: none configured, so this run's scope is the command-line targets "
            + ", ".join(str(network) for network in networks)
        )
    addresses = scope.plan(networks, config.scope.max_addresses)
    scanner = NmapScanner(nmap_settings(config, ports), scope)
    with store.run("scan", " ".join(targets)) as run:
        summary = ScanSummary(run.id, addresses.size, run.counts)
        with (
            deferred_interrupts() as interrupts,
            reporter.task("scanning", addresses.size) as advance,
        ):
            for chunk in chunk_networks(addresses, config.scan.chunk_addresses):
                interrupts.check()
                records = scanner.scan(chunk)
                if active.probes:
                    records += _probe_open_ports(records, scope, active)
                with store.writer() as writer:
                    writer.add_all(records)
                _tally(summary.counts, records)
                advance(
                    sum(network.size for network in chunk),
                    f"{summary.counts['open_ports']} open ports",
                )
        derived = store.derive(derivation)
        summary.counts["roles"] = derived.roles
        summary.counts["findings"] = derived.findings
    return summary
