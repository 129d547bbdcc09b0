"""Risky settings: scopes wider than a /8 or /32, numbers without bound, schedules out of scope."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import netaddr
import pytest
from pydantic import BaseModel

from rolecall.orchestrator.config import Config, load_config
from rolecall.orchestrator.scope import Scope
from rolecall.probes.gate import OutOfScopeError
from tests.cli_helpers import run_cli
from tests.daemon_helpers import daemon, event_named, rolecall
from tests.signal_helpers import large_nmap_xml


def _config(tmp_path: Path, text: str) -> Path:
    """A config file holding text."""
    path = tmp_path / "rolecall.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("network", ["0.0.0.0/0", "::/0", "10.0.0.0/7", "2001:db8::/31"])
def test_a_scope_wider_than_a_slash_8_or_32_is_refused_unless_confirmed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], network: str
) -> None:
    config = _config(tmp_path, f'[scope]\nallow = ["127.0.0.0/8", "{network}"]\n')
    result = run_cli(capsys, "--config", str(config), "--db", str(tmp_path / "i.db"), "runs")

    assert result.code == 2
    assert result.err == (
        f"rolecall: {config}: scope.allow: {network} is wider than a /8 (IPv4) or /32 (IPv6):"
        " if you may probe all of it, confirm with allow_wide = true in [scope]\n"
    )
    assert not (tmp_path / "i.db").exists()


@pytest.mark.parametrize("network", ["10.0.0.0/8", "2001:db8::/32"])
def test_a_scope_of_a_slash_8_or_32_needs_no_confirmation(tmp_path: Path, network: str) -> None:
    config = _config(tmp_path, f'[scope]\nallow = ["{network}"]\n')
    hosts = tmp_path / "hosts.xml"
    large_nmap_xml(hosts, 1)
    db = str(tmp_path / "i.db")
    done = rolecall(
        "--config", str(config), "--db", db, "ingest", "nmap-xml", str(hosts), cwd=tmp_path
    )

    assert done.returncode == 0, done.stderr
    assert "allow_wide" not in done.stderr


def test_a_confirmed_wide_scope_is_said_once_by_the_scan_even_when_quiet(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        '[scope]\nallow_wide = true\nallow = ["0.0.0.0/0"]\n'
        '[scan]\nports = "1,2"\nresolve_names = false\nchunk_addresses = 1\n',
    )
    db = str(tmp_path / "i.db")
    scan = rolecall(
        "--config", str(config), "--db", db, "--quiet", "scan", "subnet", "127.0.83.0/30",
        "--probes", "none", cwd=tmp_path,
    )  # fmt: skip

    assert scan.returncode == 0, scan.stderr
    assert scan.stderr == "scope: allow_wide is set, so the scope takes in all of 0.0.0.0/0\n"


@pytest.mark.parametrize("network", ["::ffff:0:0/96", "::ffff:198.51.100.0/120"])
def test_ipv4_written_as_ipv6_is_refused_in_the_scope(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], network: str
) -> None:
    """An IPv4-mapped network would slip past the /8 check and IPv4 exclusions alike."""
    config = _config(tmp_path, f'[scope]\nallow = ["{network}"]\n')
    result = run_cli(capsys, "--config", str(config), "--db", str(tmp_path / "i.db"), "runs")

    assert result.code == 2
    assert "is IPv4 written as IPv6 (::ffff:a.b.c.d): give IPv4 networks as IPv4" in result.err
    assert not (tmp_path / "i.db").exists()


def test_an_ipv4_mapped_target_is_refused_before_nmap_starts(tmp_path: Path) -> None:
    """A target ::ffff:a.b.c.d inside a wide IPv6 scope is refused, not scanned as its IPv4."""
    config = _config(
        tmp_path,
        '[scope]\nallow_wide = true\nallow = ["127.0.83.0/24", "::/0"]\n'
        'exclude = ["127.0.83.7/32"]\n',
    )
    db = tmp_path / "i.db"
    scan = rolecall(
        "--config", str(config), "--db", str(db), "scan", "subnet", "::ffff:127.0.83.7/128",
        "--probes", "none", cwd=tmp_path,
    )  # fmt: skip

    assert scan.returncode == 2
    assert "is IPv4 written as IPv6" in scan.stderr
    assert "scanned" not in scan.stdout


def test_a_target_wider_than_the_scope_is_refused_as_outside_it(tmp_path: Path) -> None:
    """::/0 holds ::ffff:0:0/96 but is refused for what it is: wider than the scope allows."""
    config = _config(tmp_path, '[scope]\nallow = ["127.0.83.0/24", "fd00:83::/64"]\n')
    scan = rolecall(
        "--config", str(config), "--db", str(tmp_path / "i.db"), "scan", "subnet", "::/0",
        "--probes", "none", cwd=tmp_path,
    )  # fmt: skip

    assert scan.returncode == 2
    assert scan.stderr.startswith("rolecall: target ::/0 is outside the configured scope (")
    assert "IPv4 written as IPv6" not in scan.stderr


NAT64_WIDE = (
    "is NAT64 space (64:ff9b::/96, 64:ff9b:1::/48) that can hold more IPv4 than a /8:"
    " if you may probe all of it, confirm with allow_wide = true in [scope]"
)


@pytest.mark.parametrize(
    "network",
    ["64:ff9b::/96", "64:ff9b::a00:0/103", "64:ff9b::/64", "64:ff9b:1::/48", "64:ff9b:1:2::/96"],
)
def test_nat64_space_holding_more_than_an_ipv4_slash_8_needs_allow_wide(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], network: str
) -> None:
    """Behind a NAT64 gateway 64:ff9b::/96 is all of IPv4, though it is only a /96."""
    config = _config(tmp_path, f'[scope]\nallow = ["{network}"]\n')
    result = run_cli(capsys, "--config", str(config), "--db", str(tmp_path / "i.db"), "runs")

    assert result.code == 2
    assert result.err == f"rolecall: {config}: scope.allow: {network} {NAT64_WIDE}\n"
    assert not (tmp_path / "i.db").exists()

    _config(tmp_path, f'[scope]\nallow_wide = true\nallow = ["{network}"]\n')
    confirmed, _ = load_config(config)
    assert confirmed.scope.allow == [network]


def test_nat64_space_of_an_ipv4_slash_8_needs_no_confirmation(tmp_path: Path) -> None:
    config, _ = load_config(_config(tmp_path, '[scope]\nallow = ["64:ff9b::10.0.0.0/104"]\n'))

    assert config.scope.allow == ["64:ff9b::a00:0/104"]


def test_an_ipv4_exclusion_also_excludes_its_nat64_spelling(tmp_path: Path) -> None:
    """exclude 127.0.83.0/24 keeps 64:ff9b::127.0.83.7 out of the scan: nmap never starts."""
    marker = tmp_path / "nmap-runs"
    nmap = tmp_path / "nmap-recorder"
    nmap.write_text(f'#!/bin/sh\necho "$@" >> {marker}\nexit 1\n')
    nmap.chmod(0o755)
    config = _config(
        tmp_path,
        '[scope]\nallow = ["64:ff9b::127.0.0.0/104", "127.0.0.0/8"]\n'
        f'exclude = ["127.0.83.0/24"]\n[scan]\nnmap = "{nmap}"\nresolve_names = false\n',
    )
    base = ("--config", str(config), "--db", str(tmp_path / "i.db"))
    for target in ("64:ff9b::127.0.83.7", "64:ff9b::7f00:5300/120", "127.0.83.7"):
        scan = rolecall(*base, "scan", "subnet", target, "--probes", "none", cwd=tmp_path)

        assert scan.returncode == 0, scan.stderr
        assert "scanned 0 addresses" in scan.stdout
    assert not marker.exists()


def test_the_scope_refuses_an_excluded_ipv4_address_reached_through_nat64(
    tmp_path: Path,
) -> None:
    """The gate every probe passes: the NAT64 spelling of an excluded IPv4 is out of scope."""
    path = _config(
        tmp_path,
        '[scope]\nallow_wide = true\nallow = ["64:ff9b::/96"]\nexclude = ["192.0.2.0/25"]\n',
    )
    config, _ = load_config(path)
    scope = Scope.from_config(config.scope)

    with pytest.raises(OutOfScopeError, match="outside the configured scope"):
        scope.admit("64:ff9b::192.0.2.9")
    with pytest.raises(OutOfScopeError):
        scope.admit_network("64:ff9b::c000:200/120")
    scope.admit("64:ff9b::192.0.2.200")
    assert not scope.plan([netaddr.IPNetwork("64:ff9b::c000:200/121")], 65536).sweep


def _numeric_settings() -> list[Any]:
    """Every int and float setting of every [section], with values outside any sensible range."""
    cases = []
    sections: dict[str, type[BaseModel]] = {
        name: field.annotation
        for name, field in Config.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    }
    for section, model in sections.items():
        for key, field in model.model_fields.items():
            if field.annotation is float:
                values = ["inf", "-inf", "nan", "-1.0", "1e300"]
            elif field.annotation is int:
                values = ["-1", "9223372036854775807"]
            else:
                continue
            cases += [
                pytest.param(section, key, value, id=f"{section}.{key}={value}") for value in values
            ]
    return cases


@pytest.mark.parametrize(("section", "key", "value"), _numeric_settings())
def test_every_number_setting_has_a_finite_sensible_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], section: str, key: str, value: str
) -> None:
    config = _config(tmp_path, f"[{section}]\n{key} = {value}\n")
    result = run_cli(capsys, "--config", str(config), "--db", str(tmp_path / "i.db"), "runs")

    assert result.code == 2
    assert result.err.startswith(f"rolecall: {config}: {section}.{key}: ")
    assert result.err.count("\n") == 1


def test_the_number_settings_cover_timeouts_rates_and_durations() -> None:
    keys = {case.values[0] + "." + case.values[1] for case in _numeric_settings()}
    assert {
        "probes.read_timeout", "probes.connect_rate", "scan.resolve_seconds", "email.timeout",
        "daemon.stop_timeout", "pcap.idle_timeout", "history.retention_days",
        "scan.max_ipv6_sweep", "retention.days",
    } <= keys  # fmt: skip


def test_an_interval_too_long_for_a_date_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(
        tmp_path,
        '[[schedule]]\nid = "x"\njob = "ingest"\nwatch = "."\nevery = 9223372036854775807\n',
    )
    result = run_cli(capsys, "--config", str(config), "--db", str(tmp_path / "i.db"), "runs")

    assert result.code == 2
    assert result.err.startswith(f"rolecall: {config}: schedule.every: ")


def _daemon_config(tmp_path: Path, scope: str, schedules: str = "") -> Path:
    """A daemon config: this scope, a JSON log file, and these [[schedule]] entries."""
    return _config(
        tmp_path,
        f'[scope]\nallow = ["{scope}"]\n[daemon]\nlog_file = "{tmp_path / "daemon.log"}"\n'
        + schedules,
    )


def test_the_daemon_refuses_to_start_with_a_schedule_outside_the_scope(tmp_path: Path) -> None:
    schedules = (
        '[[schedule]]\nid = "nightly"\njob = "scan"\ncron = "0 2 * * *"\n'
        'subnets = ["127.0.84.0/28", "127.0.85.0/24"]\n'
    )
    config = _daemon_config(tmp_path, "127.0.84.0/24", schedules)
    started = rolecall("--config", str(config), "--db", str(tmp_path / "i.db"), "run", cwd=tmp_path)

    assert started.returncode == 2
    assert started.stderr == (
        f"rolecall: {config}: schedule nightly: target 127.0.85.0/24 is outside the configured"
        " scope (127.0.85.0/24 is not allowed)\n"
    )
    log = tmp_path / "daemon.log"
    assert not log.exists() or "daemon-start" not in log.read_text()


def test_the_daemon_skips_stored_schedules_the_scope_no_longer_holds(tmp_path: Path) -> None:
    db = str(tmp_path / "i.db")
    config = _daemon_config(tmp_path, "127.0.86.0/24")
    for schedule_id, subnet in (("kept", "127.0.86.0/28"), ("gone", "127.0.86.128/28")):
        added = rolecall(
            "--config", str(config), "--db", db, "schedule", "add", "scan", "--subnet", subnet,
            "--cron", "0 2 * * *", "--id", schedule_id, cwd=tmp_path,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
    # The scope narrows after "gone" was added: it is no longer the daemon's to run.
    config = _daemon_config(tmp_path, "127.0.86.0/25")
    with daemon(
        "--config", str(config), "--db", db, cwd=tmp_path, log=tmp_path / "daemon.log"
    ) as running:
        refused = running.wait_for(event_named("schedule-refused", job="gone"))
        start = running.wait_for(event_named("daemon-start"))
        assert "outside the configured scope" in refused["error"]
        assert [entry.split()[0] for entry in start["schedules"]] == ["kept"]
        # Narrowed again while running: the reload refuses "kept" too.
        _daemon_config(tmp_path, "127.0.86.64/26")
        running.signal(signal.SIGHUP)
        running.wait_for(event_named("schedule-refused", job="kept"))
        running.wait_for(event_named("config-reloaded"))
        assert running.stop() == 0
