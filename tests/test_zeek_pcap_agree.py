"""The Zeek reader and the pcap reader make the same SMTP and SOCKS records for each capture."""

from __future__ import annotations

from pathlib import Path

import pytest

from rolecall.probes.passive.pcap.read import PcapSettings, read_pcap
from rolecall.probes.passive.zeek.records import ZeekSettings, read_zeek
from rolecall.probes.records import SmtpTransaction, SocksRequest
from tests.data_paths import CONFORMANCE
from tests.test_zeek_conformance import CASES, unmasked

SMTP_FIELDS = [
    "client",
    "client_port",
    "server",
    "server_port",
    "helo",
    "mail_from",
    "subject",
    "user_agent",
]
SMTP_FIELDS += ["last_reply", "tls"]
SOCKS_FIELDS = [
    "client",
    "client_port",
    "proxy",
    "proxy_port",
    "version",
    "user",
    "status",
    "request_host",
]
SOCKS_FIELDS += ["request_name", "request_port"]


def compared(record: SmtpTransaction | SocksRequest) -> dict[str, object]:
    """The fields both readers must agree on."""
    if isinstance(record, SocksRequest):
        return {name: getattr(record, name) for name in SOCKS_FIELDS}
    fields: dict[str, object] = {name: getattr(record, name) for name in SMTP_FIELDS}
    # Zeek logs rcptto as a set, in hash order: the recipients must match, not their order
    fields["rcpt_to"] = sorted(record.rcpt_to)
    return fields


@pytest.mark.parametrize("case", CASES)
def test_both_readers_agree(case: str, tmp_path: Path) -> None:
    kinds = (SmtpTransaction, SocksRequest)
    zeek = [r for r in read_zeek(unmasked(case, tmp_path), ZeekSettings()) if isinstance(r, kinds)]
    pcap_path = CONFORMANCE / case.split("/", maxsplit=1)[0] / "trace.pcap"
    pcap = [r for r in read_pcap(pcap_path, PcapSettings()) if isinstance(r, kinds)]
    assert zeek
    assert [compared(r) for r in zeek] == [compared(r) for r in pcap]
    assert {r.source for r in zeek} == {"zeek"}
    assert {r.source for r in pcap} == {"pcap"}
