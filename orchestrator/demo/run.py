"""The demo's run: a lab on loopback, its traffic captured, scanned, ingested and reported."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rolecall.inventory.findings import list_findings
from rolecall.inventory.store import Store
from rolecall.orchestrator.config import Config, ScopeConfig
from rolecall.orchestrator.demo.capture import can_capture, live_capture, replay_recorded
from rolecall.orchestrator.demo.layout import (
    DEFAULT_NETWORK,
    DEFAULT_OUT,
    PORTS,
    SERVERS,
    LabAddresses,
)
from rolecall.orchestrator.demo.traffic import drive_traffic
from rolecall.orchestrator.errors import RunError
from rolecall.orchestrator.progress import Reporter
from rolecall.orchestrator.runs.ingest import ingest_files
from rolecall.orchestrator.runs.report import default_period, write_report
from rolecall.orchestrator.runs.scan import scan_subnets
from rolecall.orchestrator.settings import derive_settings, reader

RECORDED_NOTE = "a capture of the same traffic recorded when rolecall was built"


@dataclass(frozen=True)
class DemoSettings:
    """Where the lab lives, where its files go, and which capture to use."""

    network: str = DEFAULT_NETWORK
    out_dir: Path = DEFAULT_OUT
    recorded: bool = False


@dataclass
class DemoResult:
    """What the demo made and found."""

    report: Path
    database: Path
    capture: Path
    capture_kind: str
    findings: list[tuple[str, str, str, str]] = field(default_factory=list)
    traffic: list[str] = field(default_factory=list)
    seconds: float = 0.0


def demo_config(config: Config, network: str) -> Config:
    """The config for the demo: scope is the lab network, quick loopback timeouts."""
    scan = config.scan.model_copy(update={"resolve_names": False, "timing": 4})
    probes = config.probes.model_copy(update={"host_budget": 20.0})
    return config.model_copy(
        update={"scope": ScopeConfig(allow=[network]), "scan": scan, "probes": probes}
    )


def _fresh_database(out_dir: Path) -> Path:
    """The demo's inventory path, with any earlier demo's database removed."""
    database = out_dir / "demo.db"
    for suffix in ("", "-wal", "-shm"):
        database.with_name(database.name + suffix).unlink(missing_ok=True)
    return database


def _findings(store: Store, lab: LabAddresses) -> list[tuple[str, str, str, str]]:
    """(rule, address, lab name, summary) of every open finding."""
    with store.read("list the findings") as connection:
        found = list_findings(connection)
    return [(f.rule, f.address, lab.name_of(f.address), f.summary) for f in found]


def _capture_note(live: bool, recorded: bool) -> str:
    """Which capture the demo ingests and, when not the live one, why."""
    if live:
        return "live (tcpdump on lo)"
    if recorded:
        return f"{RECORDED_NOTE} (--recorded)"
    if os.geteuid() != 0:
        return f"{RECORDED_NOTE}; a live capture (tcpdump on lo) needs root"
    return f"{RECORDED_NOTE}; a live capture needs tcpdump (apt-get install tcpdump)"


def run_demo(settings: DemoSettings, config: Config, reporter: Reporter) -> DemoResult:
    """Run the lab, capture its traffic, scan it, ingest the capture, derive, report."""
    # The lab's servers need aiosmtpd; only the demo loads it, so other commands never do.
    from rolecall.orchestrator.demo.lab import running_lab  # noqa: PLC0415

    started = time.monotonic()
    lab = LabAddresses.within(settings.network)
    settings.out_dir.mkdir(parents=True, exist_ok=True)
    capture = settings.out_dir / "demo-capture.pcap"
    live = can_capture() and not settings.recorded
    reporter.note(f"demo lab on {lab.network}")
    reporter.note("capture: " + _capture_note(live, settings.recorded))
    config = demo_config(config, lab.network)
    store = Store.open(str(_fresh_database(settings.out_dir)))
    try:
        with tempfile.TemporaryDirectory() as scratch, running_lab(lab, Path(scratch)):
            if live:
                with live_capture(capture, lab.network):
                    traffic = drive_traffic(lab)
            else:
                traffic = drive_traffic(lab)
                replay_recorded(capture, lab.network)
            reporter.note("lab traffic: " + "; ".join(traffic.lines))
            targets = [lab[name] for name in SERVERS]
            scan_subnets(store, config, targets, reporter, PORTS, None)
        pcap = reader(config, "pcap")
        summary = ingest_files(store, "pcap", [capture], pcap, reporter, derive_settings(config))
        if summary.failures:
            raise RunError(f"demo: the capture could not be read: {summary.failures[0]}")
        since, until = default_period(datetime.now(UTC) + timedelta(minutes=1))
        report = write_report(store, config, "html", since, until, settings.out_dir / "report.html")
        return DemoResult(
            report=report.resolve(),
            database=(settings.out_dir / "demo.db").resolve(),
            capture=capture.resolve(),
            capture_kind="live" if live else "recorded",
            findings=_findings(store, lab),
            traffic=traffic.lines,
            seconds=time.monotonic() - started,
        )
    finally:
        store.close()
