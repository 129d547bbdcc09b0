"""`schedule add scan --site`: the daemon queues each run to the site's workers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from tests.cli_helpers import Listener
from tests.cluster_helpers import running_workers, write_config
from tests.daemon_helpers import daemon, event_named, rolecall
from tests.postgres_server import PostgresServer
from tests.redis_server import RedisServer


def test_a_scheduled_site_scan_is_queued_by_the_daemon_and_run_by_the_worker(
    tmp_path: Path, postgres: PostgresServer, listeners: Callable[[str, int], Listener]
) -> None:
    listeners("127.0.81.1", 2525)
    broker = RedisServer.start()
    inventory = postgres.create_database()
    try:
        log = tmp_path / "daemon.log"
        config = write_config(
            tmp_path / "d.toml", inventory, broker.url, extra=f"[daemon]\nlog_file = '{log}'\n"
        )
        site = write_config(tmp_path / "a.toml", inventory, broker.url, ["127.0.81.0/29"])
        added = rolecall(
            "--config", str(config), "schedule", "add", "scan", "--subnet", "127.0.81.0/29",
            "--ports", "2525", "--site", "a", "--every", "3", "--id", "site-a", cwd=tmp_path,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        listed = rolecall(
            "--config", str(config), "schedule", "list", "--format", "json", cwd=tmp_path
        )
        (schedule,) = json.loads(listed.stdout)
        assert schedule["arguments"]["site"] == "a"
        with (
            running_workers((site, "a", tmp_path / "a.log")),
            daemon("--config", str(config), cwd=tmp_path, log=log) as running,
        ):
            done = running.wait_for(event_named("job-ok", job="site-a"), timeout=90)
            assert done["outcome"].startswith("queued run ")
            queued = int(done["outcome"].split()[2].rstrip(":"))
            assert "2 chunks to site a" in done["outcome"]
            assert running.stop() == 0
            deadline = time.monotonic() + 90
            while True:
                runs = rolecall("--db", inventory, "runs", "--format", "json", cwd=tmp_path)
                (run,) = [r for r in json.loads(runs.stdout) if r["id"] == queued]
                if run["status"] != "running":
                    break
                assert time.monotonic() < deadline, run
                time.sleep(0.5)
        assert run["status"] == "ok"
        assert [c["state"] for c in run["chunks"]] == ["done", "done"]
        assert run["counts"]["open_ports"] == 1
    finally:
        broker.stop()
        postgres.drop_database(inventory)
