"""`--top-ports N` (nmap's own list of common ports) and the default port list."""

from __future__ import annotations

import csv
import io
import json
import stat
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from rolecall.orchestrator.config import Config
from rolecall.probes.nmap.settings import NmapSettings
from tests.cli_helpers import Listener, run_cli
from tests.data_paths import CONFIG_EXAMPLE

ADDRESS = "127.77.6.1"
"""Only this test's listeners are on it (the suite's own network namespace)."""
ALTERNATES = ["2525", "1081", "3128", "4145", "8000", "8080", "8081", "8118", "8888"]
ALTERNATES += ["9050", "9150", "10080"]


def _recording_nmap(tmp_path: Path) -> tuple[Path, Path]:
    """A wrapper around the real nmap that writes its arguments, one line per run."""
    marker = tmp_path / "nmap-runs"
    wrapper = tmp_path / "nmap-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {marker}\nexec nmap "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return wrapper, marker


def test_top_ports_scans_nmaps_most_common_ports_and_probes_what_is_open(
    capsys: pytest.CaptureFixture[str],
    db_path: Path,
    tmp_path: Path,
    listeners: Callable[[str, int], Listener],
) -> None:
    common = listeners(ADDRESS, 8080)  # in nmap's 25 most common TCP ports
    rare = listeners(ADDRESS, 8124)  # not in them
    wrapper, marker = _recording_nmap(tmp_path)
    config = tmp_path / "rolecall.toml"
    config.write_text(f'[scan]\nnmap = "{wrapper}"\nresolve_names = false\n', encoding="utf-8")
    base = ("--config", str(config), "--db", str(db_path))

    result = run_cli(capsys, *base, "scan", "subnet", ADDRESS, "--top-ports", "25")
    assert result.code == 0, result.err
    assert "1 open ports" in result.out
    (run,) = marker.read_text().splitlines()
    assert " --top-ports 25 " in run
    assert " -p " not in run
    # The probes ran on the port nmap found, and only there.
    assert common.accepted > 1
    assert rare.accepted == 0
    exported = run_cli(capsys, *base, "export", "inventory", "--format", "csv")
    (row,) = csv.DictReader(io.StringIO(exported.out))
    found = (row["address"], row["open_ports"], row["sources"])
    assert found == (ADDRESS, "8080/tcp", "probe;scan")


@pytest.mark.parametrize("value", ["0", "65536", "many"])
def test_top_ports_takes_a_number_from_1_to_65535(
    capsys: pytest.CaptureFixture[str], db_path: Path, value: str
) -> None:
    result = run_cli(capsys, "--db", str(db_path), "scan", "subnet", ADDRESS, "--top-ports", value)
    assert result.code == 2
    assert "--top-ports" in result.err
    assert "Traceback" not in result.err
    assert not db_path.exists()


def test_top_ports_and_ports_together_are_refused(
    capsys: pytest.CaptureFixture[str], db_path: Path
) -> None:
    args = ("scan", "subnet", ADDRESS, "--ports", "25", "--top-ports", "5")
    result = run_cli(capsys, "--db", str(db_path), *args)
    assert result.code == 2
    assert result.err == "rolecall: --ports and --top-ports: give one list of ports, not both\n"


def test_a_scheduled_scan_keeps_top_ports(
    capsys: pytest.CaptureFixture[str], db_path: Path
) -> None:
    base = ("--db", str(db_path), "schedule", "add", "scan", "--subnet", ADDRESS)
    added = run_cli(capsys, *base, "--cron", "0 2 * * *", "--top-ports", "100", "--id", "top")
    assert added.code == 0, added.err
    both = run_cli(capsys, *base, "--every", "60", "--top-ports", "100", "--ports", "25")
    assert both.code == 2
    assert both.err == "rolecall: schedule top_ports: give ports or top_ports, not both\n"

    listed = run_cli(capsys, "--db", str(db_path), "schedule", "list", "--format", "json")
    (entry,) = json.loads(listed.out)
    assert entry["arguments"] == {
        "subnets": [f"{ADDRESS}/32"],
        "ports": None,
        "probes": None,
        "top_ports": 100,
        "site": None,
    }


@pytest.mark.parametrize(
    ("setting", "why"),
    [
        ("top_ports = 0", "greater than or equal to 1"),
        ('ports = "25"\ntop_ports = 10', "give ports or top_ports, not both"),
    ],
)
def test_a_schedule_entry_with_a_bad_top_ports_is_refused_naming_the_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, setting: str, why: str
) -> None:
    config = tmp_path / "rolecall.toml"
    config.write_text(
        f'[[schedule]]\nid = "x"\njob = "scan"\ncron = "0 2 * * *"\nsubnets = ["{ADDRESS}"]\n'
        f"{setting}\n",
        encoding="utf-8",
    )
    result = run_cli(capsys, "--config", str(config), "--db", str(tmp_path / "i.db"), "runs")
    assert result.code == 2
    assert result.err.startswith(f"rolecall: {config}: schedule.top_ports: ")
    assert why in result.err


def test_the_default_ports_take_in_the_alternates_of_mail_and_proxies() -> None:
    example = tomllib.loads(CONFIG_EXAMPLE.read_text(encoding="utf-8"))
    defaults = {Config().scan.ports, NmapSettings().ports, example["scan"]["ports"]}
    assert len(defaults) == 1
    ports = defaults.pop().split(",")
    assert set(ALTERNATES) <= set(ports)
    assert {"25", "465", "587", "1080", "3128"} <= set(ports)
