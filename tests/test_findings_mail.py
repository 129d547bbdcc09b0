"""Mail findings from real SMTP sessions recorded on loopback: each rule's positive and negative."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.findings_helpers import (
    at,
    capture,
    findings,
    ingest,
    pop3_server,
    read_mailbox,
    roles,
    send_mail,
    write_config,
)
from tests.pcap_helpers import aiosmtpd_server, free_port, microsocks

CONFIG = """
[scope]
allow = ["127.0.120.0/28"]
[findings]
approved_relays = ["127.0.120.201"]
mass_mailers = ["Acme Blaster"]
"""


def test_bulk_mailer_is_named_and_an_ordinary_client_is_not(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    config = write_config(tmp_path, CONFIG)
    with aiosmtpd_server(at(5)) as (host, port, _), capture(tmp_path, "mail") as pcap:
        send_mail(at(10), (host, port), ["bob@corp.test"], mailer="The Bat! (v9.1.18) Home")
        send_mail(at(11), (host, port), ["bob@corp.test"], mailer="Acme Blaster 2.0")
        send_mail(at(12), (host, port), ["bob@corp.test"], mailer="Microsoft Outlook 16.0")
    ingest(capsys, database, config, pcap)
    found = findings(capsys, database, config)
    bat = found["mass-mailer-software", at(10)]
    assert "The Bat!" in bat["summary"]
    assert bat["severity"] == "high"
    assert bat["status"] == "open"
    assert bat["evidence"][0].startswith("smtp:")
    assert ("mass-mailer-software", at(11)) in found  # a signature added in the config
    assert ("mass-mailer-software", at(12)) not in found


def test_reading_mail_over_pop3_is_not_sending_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    port = free_port(at(6))
    with pop3_server(at(6), port), capture(tmp_path, "pop3") as pcap:
        assert b"X-Mailer: The Bat!" in read_mailbox(at(13), (at(6), port))
    ingest(capsys, database, None, pcap)
    assert "smtp-client" not in roles(capsys, database)[at(13)]["roles"]
    assert findings(capsys, database) == {}


def test_refused_recipients_raise_relay_refused_not_open_relay(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    with aiosmtpd_server(at(5)) as (host, port, _), capture(tmp_path, "refused") as pcap:
        refused = send_mail(at(10), (host, port), ["refuse-me@elsewhere.test", "ok@corp.test"])
        assert list(refused) == ["refuse-me@elsewhere.test"]
        send_mail(at(11), (host, port), ["ok@corp.test"])
    ingest(capsys, database, None, pcap)
    found = findings(capsys, database)
    assert "refuse-me@elsewhere.test" in found["relay-refused", at(10)]["summary"]
    assert ("relay-refused", at(11)) not in found
    assert not [key for key in found if key[0] == "open-relay"]


def test_mail_through_a_socks_proxy_names_client_and_proxy(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    with (
        aiosmtpd_server(at(5)) as (host, port, _),
        microsocks(at(7)) as proxy,
        capture(tmp_path, "proxied") as pcap,
    ):
        send_mail(at(10), (host, port), ["bob@corp.test"], proxy=proxy)
        send_mail(at(11), (host, port), ["bob@corp.test"])
    ingest(capsys, database, None, pcap)
    found = findings(capsys, database)
    summary = found["mail-via-proxy", at(10)]["summary"]
    assert at(10) in summary
    assert at(7) in summary
    assert ("mail-via-proxy", at(11)) not in found


def test_direct_smtp_to_outside_unless_an_approved_relay(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    config = write_config(tmp_path, CONFIG)
    with (
        aiosmtpd_server(at(200)) as outside,
        aiosmtpd_server(at(201)) as approved,
        capture(tmp_path, "outbound") as pcap,
    ):
        send_mail(at(10), outside[:2], ["someone@far.test"])
        send_mail(at(11), approved[:2], ["someone@far.test"])
    ingest(capsys, database, config, pcap)
    found = findings(capsys, database, config)
    assert at(200) in found["direct-external-smtp", at(10)]["summary"]
    assert ("direct-external-smtp", at(11)) not in found
    # Without a scope nothing is "inside": the rule cannot judge, so the finding is resolved.
    assert findings(capsys, database)["direct-external-smtp", at(10)]["status"] == "resolved"


def test_workstations_mailing_their_own_domain_through_the_relay_raise_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    config = write_config(tmp_path, CONFIG)
    with aiosmtpd_server(at(5)) as relay, capture(tmp_path, "office") as pcap:
        for host in (10, 11, 12):
            send_mail(at(host), relay[:2], ["colleague@corp.test", "boss@corp.test"])
    ingest(capsys, database, config, pcap)
    assert findings(capsys, database, config) == {}
    inventory = roles(capsys, database, config)
    for host in (10, 11, 12):
        assert inventory[at(host)]["roles"] == ["smtp-client", "workstation"]
    assert "workstation" not in inventory[at(5)]["roles"]
