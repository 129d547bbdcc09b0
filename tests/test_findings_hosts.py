"""Findings about what a host is against what it does: policy, first-time senders, statuses."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli
from tests.findings_helpers import (
    at,
    capture,
    cli,
    fetch_web,
    findings,
    ingest,
    send_mail,
    write_config,
)
from tests.pcap_helpers import aiosmtpd_server
from tests.probe_helpers import web_server


def test_a_web_server_sending_mail_is_unexpected_a_workstation_is_not(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    with (
        web_server(at(30), 8080),
        aiosmtpd_server(at(5)) as relay,
        capture(tmp_path, "web") as pcap,
    ):
        fetch_web(at(10), f"http://{at(30)}:8080")
        send_mail(at(30), relay[:2], ["victim@far.test"])
        send_mail(at(10), relay[:2], ["colleague@corp.test"])
    ingest(capsys, database, None, pcap)
    found = findings(capsys, database)
    summary = found["unexpected-mail-client", at(30)]["summary"]
    assert "web-server" in summary
    assert found["unexpected-mail-client", at(30)]["evidence"][0].startswith("smtp:")
    assert ("unexpected-mail-client", at(10)) not in found


def test_group_policy_forbids_mail_or_limits_it_to_relays(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    config = write_config(
        tmp_path,
        """
[[groups]]
name = "printers"
addresses = ["127.0.120.40"]
may_send_mail = false

[[groups]]
name = "office"
networks = ["127.0.120.0/26"]
exclude_groups = ["printers"]
mail_relays = ["127.0.120.5"]
""",
    )
    with (
        aiosmtpd_server(at(5)) as relay,
        aiosmtpd_server(at(6)) as other,
        capture(tmp_path, "groups") as pcap,
    ):
        send_mail(at(40), relay[:2], ["admin@corp.test"])
        send_mail(at(41), other[:2], ["someone@corp.test"])
        send_mail(at(42), relay[:2], ["someone@corp.test"])
    ingest(capsys, database, config, pcap)
    found = findings(capsys, database, config)
    assert "printers" in found["unexpected-mail-client", at(40)]["summary"]
    assert at(6) in found["unexpected-mail-client", at(41)]["summary"]
    assert ("unexpected-mail-client", at(42)) not in found


def test_new_smtp_client_after_the_learning_period(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    config = write_config(tmp_path, "[findings]\nnew_client_learning_days = 0.00001\n")
    with aiosmtpd_server(at(5)) as relay:
        with capture(tmp_path, "first") as first:
            send_mail(at(10), relay[:2], ["a@corp.test"])
        time.sleep(1.5)
        with capture(tmp_path, "second") as second:
            send_mail(at(10), relay[:2], ["a@corp.test"])
            send_mail(at(11), relay[:2], ["a@corp.test"])
    ingest(capsys, database, config, first)
    assert findings(capsys, database, config) == {}
    ingest(capsys, database, config, second)
    found = findings(capsys, database, config)
    assert list(found) == [("new-smtp-client", at(11))]
    assert found["new-smtp-client", at(11)]["severity"] == "info"


def test_acknowledged_findings_stay_acknowledged_and_stopped_evidence_resolves(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    config = write_config(tmp_path, "[findings]\nresolve_after_hours = 0.0002\n")
    with aiosmtpd_server(at(5)) as relay:
        with capture(tmp_path, "bulk") as bulk:
            send_mail(at(10), relay[:2], ["a@corp.test"], mailer="The Bat! (v9)")
            send_mail(at(11), relay[:2], ["a@corp.test"], mailer="The Bat! (v9)")
        time.sleep(1.5)
        with capture(tmp_path, "later") as later:
            send_mail(at(10), relay[:2], ["a@corp.test"], mailer="Thunderbird 115")
            send_mail(at(11), relay[:2], ["a@corp.test"], mailer="Thunderbird 115")
    ingest(capsys, database, config, bulk)
    acked = cli(capsys, database, config, "findings", "ack", "mass-mailer-software", at(11))
    assert "acknowledged" in acked.out
    missing = run_cli(capsys, "--db", database, "findings", "ack", "mass-mailer-software", at(99))
    assert missing.code == 2
    assert "no mass-mailer-software finding" in missing.err
    ingest(capsys, database, config, later)
    found = findings(capsys, database, config)
    assert found["mass-mailer-software", at(10)]["status"] == "resolved"
    assert found["mass-mailer-software", at(11)]["status"] == "acknowledged"
    text = cli(capsys, database, config, "findings", "list", "--status", "resolved").out
    assert at(10) in text
    assert at(11) not in text
