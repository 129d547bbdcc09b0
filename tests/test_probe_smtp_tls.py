"""SMTP over TLS against a real Exim (GnuTLS) and the probe's OpenSSL 3: STARTTLS, implicit TLS.

Implicit TLS is found on 465 and on any port where a TLS handshake leads to an
SMTP greeting; a TLS port answering HTTP stays https. Certificate names become
host names. No server may ever see DATA.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from rolecall.orchestrator.demo.lab_support import server_tls
from rolecall.probes.active.driver import run_probes
from rolecall.probes.records import HostName, Record
from tests.cli_helpers import run_cli
from tests.mta_helpers import LOCAL_ONLY, TRUSTS_OWN_SENDERS, exim
from tests.probe_helpers import (
    FAST,
    LoopbackGate,
    RelayPolicy,
    detail_of,
    mail_server,
    observed,
    roles_of,
    services,
    web_server,
)

SANS = ("mail.corp.test", "MX.Corp.Test.", "*.corp.test", "bad name.corp.test")
"""The certificate's DNS names: two real ones (one to normalise), a wildcard and junk."""


def names_of(records: list[Record]) -> set[str]:
    """Return the host names the probes recorded (source probe)."""
    return {r.name for r in records if isinstance(r, HostName) and r.source == "probe"}


def test_starttls_against_exim_then_ehlo_again_auth_and_relay_verdict(tmp_path: Path) -> None:
    """Exim on 25 offers STARTTLS: handshake, EHLO again over TLS, relay refused, no DATA."""
    with exim(tmp_path, "127.0.171.1", [25], rcpt_policy=LOCAL_ONLY, dns_names=SANS) as server:
        records = run_probes([("127.0.171.1", 25)], LoopbackGate(), FAST)
        log = server.log.read_text()
    assert observed(records, 25, "protocol") == ["smtp"]
    assert "STARTTLS" in observed(records, 25, "smtp-extensions")[0].split()
    assert observed(records, 25, "smtp-starttls") == ["ok"]
    starttls = detail_of(records, 25, "smtp-starttls")
    assert starttls["reply"][0].startswith("220")
    assert starttls["ehlo_after_tls"][0].startswith("250-mail.corp.test")
    assert not starttls["error"]
    assert observed(records, 25, "tls-certificate") == ["CN=mail.corp.test"]
    assert names_of(records) == {"mail.corp.test", "mx.corp.test"}
    assert observed(records, 25, "smtp-relay") == ["relay-refused"]
    assert detail_of(records, 25, "smtp-relay")["tls"] is True
    # Exim logged the relay attempts on a TLS connection (X=TLS...), and never a DATA.
    assert re.search(r"X=TLS1\.[23]:\S+ .*rejected RCPT <rolecall-probe@example\.net>", log)
    assert "probe-seen DATA" not in log
    assert roles_of(records, 25) == {"smtp-server"}
    assert [s.product for s in services(records, 25)] == ["Exim"]


@pytest.mark.parametrize("port", [465, 10465, 443])
def test_implicit_tls_exim_is_smtp_with_tls_on_any_port(tmp_path: Path, port: int) -> None:
    """Exim speaking TLS first (tls_on_connect_ports) is SMTP on 465, 10465 and even 443."""
    with exim(
        tmp_path,
        "127.0.171.2",
        [port],
        tls_ports=[port],
        rcpt_policy=TRUSTS_OWN_SENDERS,
        dns_names=SANS,
    ) as server:
        records = run_probes(
            [("127.0.171.2", port)], LoopbackGate(), FAST, nmap_names={("127.0.171.2", port): ""}
        )
        seen = server.seen()
    assert observed(records, port, "protocol") == ["smtp"]
    assert detail_of(records, port, "protocol")["implicit_tls"] is True
    assert observed(records, port, "smtp-starttls") == []
    assert observed(records, port, "tls-certificate") == ["CN=mail.corp.test"]
    assert names_of(records) == {"mail.corp.test", "mx.corp.test"}
    assert observed(records, port, "smtp-relay") == ["open-relay"]
    relay = detail_of(records, port, "smtp-relay")
    assert relay["tls"] is True
    assert relay["accepted"]["variant"] == "own-domain-sender"
    assert "DATA" not in seen
    assert seen[-1] == "RCPT <rolecall-probe@example.net>"
    assert roles_of(records, port) == {"smtp-server", "smtp-open-relay"}


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_implicit_tls_with_auth_on_an_unusual_port_is_submission(tmp_path: Path) -> None:
    """TLS first, then AUTH demanded, on a port no list names: submission, AUTH required."""
    tls = server_tls(tmp_path, "submit.corp.test")
    kwargs = {
        "ssl_context": tls,
        "auth_required": True,
        "auth_require_tls": False,
        "authenticator": lambda *_a: None,
    }
    with mail_server("127.0.171.3", 10587, RelayPolicy(), **kwargs) as server:
        records = run_probes([("127.0.171.3", 10587)], LoopbackGate(), FAST)
    assert detail_of(records, 10587, "protocol")["implicit_tls"] is True
    assert observed(records, 10587, "smtp-auth") == ["LOGIN PLAIN"]
    assert observed(records, 10587, "smtp-plaintext-auth") == []
    assert observed(records, 10587, "smtp-relay") == ["auth-required"]
    assert roles_of(records, 10587) == {"smtp-server", "smtp-submission", "smtp-auth-required"}
    assert names_of(records) == {"submit.corp.test"}
    assert "RCPT" not in server.log.commands
    assert "DATA" not in server.log.commands


@pytest.mark.parametrize("port", [465, 10443])
def test_a_tls_port_answering_http_stays_https(tmp_path: Path, port: int) -> None:
    """HTTPS behind a TLS handshake is https, even on 465; its certificate names are kept."""
    tls = server_tls(tmp_path, "www.corp.test")
    with web_server("127.0.171.4", port, tls):
        records = run_probes(
            [("127.0.171.4", port)], LoopbackGate(), FAST, nmap_names={("127.0.171.4", port): ""}
        )
    assert observed(records, port, "protocol") == ["https"]
    assert observed(records, port, "smtp-relay") == []
    assert roles_of(records, port) == {"web-server", "https-server"}
    assert names_of(records) == {"www.corp.test"}


def test_scan_stores_certificate_names_as_hostnames_and_finds_the_tls_relay(
    capsys: pytest.CaptureFixture[str], db_path: Path, tmp_path: Path
) -> None:
    """`scan subnet` over an implicit-TLS Exim with AUTH: names from its certificate, roles."""
    with exim(
        tmp_path,
        "127.0.171.5",
        [10465],
        tls_ports=[10465],
        rcpt_policy=TRUSTS_OWN_SENDERS,
        dns_names=SANS,
        auth=True,
    ) as server:
        args = ("--db", str(db_path), "scan", "subnet", "127.0.171.5", "--ports", "10465")
        result = run_cli(capsys, *args)
        seen = server.seen()
    assert result.code == 0, result.err
    assert "DATA" not in seen
    exported = run_cli(capsys, "--db", str(db_path), "export", "inventory")
    assert exported.code == 0, exported.err
    (row,) = [r for r in csv.DictReader(io.StringIO(exported.out)) if r["address"] == "127.0.171.5"]
    assert set(row["hostnames"].split(";")) == {"mail.corp.test", "mx.corp.test"}
    roles = set(row["roles"].split(";"))
    assert {"smtp-server", "smtp-open-relay", "smtp-submission"} <= roles
    findings = run_cli(capsys, "--db", str(db_path), "export", "findings", "--format", "json")
    assert findings.code == 0, findings.err
    assert "open-relay" in {f["rule"] for f in json.loads(findings.out)}
