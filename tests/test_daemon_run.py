"""`rolecall run` end to end: a real daemon process, a loopback lab, a real SMTP receiver."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import time
from pathlib import Path

from rolecall.orchestrator.demo.lab import running_lab
from rolecall.orchestrator.demo.layout import LabAddresses
from tests.daemon_helpers import daemon, event_named, rolecall, smtp_receiver

LAB = "127.0.122.64/26"
RECEIVER = "127.0.122.120"


def _config(tmp_path: Path, port: int, extra: str = "") -> Path:
    """A config: the inventory, the lab as scope, a JSON log file, the receiver as relay."""
    path = tmp_path / "rolecall.toml"
    path.write_text(
        f"""
[database]
url = "{tmp_path / "inventory.db"}"

[scope]
allow = ["{LAB}"]

[scan]
resolve_names = false
timing = 4

[daemon]
log_file = "{tmp_path / "daemon.log"}"
stop_timeout = 60

[email]
host = "{RECEIVER}"
port = {port}
tls = "none"
sender = "rolecall@lab.example"
to = ["soc@lab.example"]
keep_dir = "{tmp_path / "reports"}"

[[schedule]]
id = "weekly"
job = "report-email"
every = 3
{extra}
""",
        encoding="utf-8",
    )
    return path


def _runs(tmp_path: Path) -> list[dict[str, object]]:
    """The run table as `export runs` shows it."""
    result = rolecall(
        "--config", str(tmp_path / "rolecall.toml"), "export", "runs", "--format", "json",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    runs: list[dict[str, object]] = json.loads(result.stdout)
    return runs


def test_daemon_scans_emails_reloads_refuses_a_twin_and_stops_cleanly(tmp_path: Path) -> None:
    lab = LabAddresses.within(LAB)
    with smtp_receiver(RECEIVER) as (port, inbox), running_lab(lab, tmp_path):
        config = _config(tmp_path, port)
        base = ("--config", str(config))
        added = rolecall(
            *base, "schedule", "add", "scan", "--subnet", f"{lab['relay']},{lab['proxy']}",
            "--ports", "1080,2525", "--every", "2", "--id", "lab-scan", cwd=tmp_path,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        listed = rolecall(*base, "schedule", "list", cwd=tmp_path)
        assert "lab-scan\tscan\tevery 2s" in listed.stdout
        assert "config:weekly\treport-email\tevery 3s" in listed.stdout

        with daemon(*base, cwd=tmp_path, log=tmp_path / "daemon.log") as running:
            started = running.wait_for(event_named("daemon-start"))
            assert started["config_schedules"] == ["config:weekly"]
            # The CLI scans while the daemon's own scans and reports write to the same database.
            for _ in range(3):
                cli = rolecall(
                    *base, "-q", "scan", "subnet", lab["mx"], "--ports", "2525", cwd=tmp_path
                )
                assert cli.returncode == 0, cli.stderr
            scanned = running.wait_for(event_named("job-ok", job="lab-scan"))
            assert "open ports" in scanned["outcome"]
            running.wait_for(event_named("job-ok", job="config:weekly"))
            assert inbox.messages, "the weekly report never arrived"
            assert inbox.recipients[0] == ["soc@lab.example"]
            assert b"Subject: rolecall report" in inbox.messages[0]

            twin = rolecall(*base, "run", cwd=tmp_path)
            assert twin.returncode == 2
            assert "another rolecall daemon" in twin.stderr

            config.write_text(
                config.read_text()
                + '\n[[schedule]]\nid = "extra"\njob = "scan"\ncron = "0 3 * * *"\n'
                + f'subnets = ["{lab["www"]}"]\n'
            )
            running.signal(signal.SIGHUP)
            reloaded = running.wait_for(event_named("config-reloaded"))
            assert reloaded["config_schedules"] == ["config:extra", "config:weekly"]

            assert running.stop() == 0
            stopped = running.wait_for(event_named("daemon-stop"))
            assert stopped["clean"] is True

    runs = _runs(tmp_path)
    assert runs, "no runs recorded"
    assert all(run["status"] != "running" for run in runs), runs
    kinds = {str(run["kind"]) for run in runs if run["status"] == "ok"}
    assert {"scheduled scan", "scan", "scheduled report-email", "report-email"} <= kinds
    assert sum(1 for run in runs if run["kind"] == "scan") >= 4  # 3 from the CLI, 1+ daemon
    with sqlite3.connect(tmp_path / "inventory.db") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        roles = connection.execute(
            "SELECT role FROM role WHERE address = ?", (lab["relay"],)
        ).fetchall()
    assert ("smtp-open-relay",) in roles


def test_a_second_daemon_is_refused_while_the_first_holds_the_lock(tmp_path: Path) -> None:
    config = _config(tmp_path, 25)
    config.write_text(config.read_text().replace("every = 3", "cron = '0 7 * * MON'"))
    with daemon("--config", str(config), cwd=tmp_path, log=tmp_path / "daemon.log") as first:
        first.wait_for(event_named("daemon-start"))
        second = rolecall("--config", str(config), "run", cwd=tmp_path)
        assert second.returncode == 2
        assert "another rolecall daemon (pid" in second.stderr
        assert first.stop() == 0
    again = rolecall("--config", str(config), "schedule", "list", cwd=tmp_path)
    assert "config:weekly" in again.stdout


def test_a_job_outliving_the_stop_timeout_is_recorded_as_interrupted(tmp_path: Path) -> None:
    silent = "127.0.122.121"
    config = _config(tmp_path, 25)
    config.write_text(
        config.read_text()
        .replace("every = 3", "cron = '0 7 * * MON'")
        .replace("stop_timeout = 60", "stop_timeout = 0.5")
        + "\n[probes]\nbanner_timeout = 20.0\nread_timeout = 20.0\n"
    )
    with socket.create_server((silent, 0)) as server:
        port = server.getsockname()[1]
        base = ("--config", str(config))
        added = rolecall(
            *base, "schedule", "add", "scan", "--subnet", silent, "--ports", str(port),
            "--every", "1", "--id", "slow", cwd=tmp_path,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        with daemon(*base, cwd=tmp_path, log=tmp_path / "daemon.log") as running:
            running.wait_for(event_named("job-start", job="slow"))
            time.sleep(2.0)  # nmap is done; the probe now waits on a peer that never speaks
            assert running.stop() == 1
            forced = running.wait_for(event_named("daemon-forced-stop"))
            assert len(forced["interrupted_runs"]) == 2
    runs = {str(run["kind"]): run for run in _runs(tmp_path)}
    assert runs["scheduled scan"]["status"] == "interrupted"
    assert runs["scan"]["status"] == "interrupted"
    assert "daemon stopped (SIGTERM)" in str(runs["scan"]["error"])
    with sqlite3.connect(tmp_path / "inventory.db") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
