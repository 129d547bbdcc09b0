"""Asset groups from config: by network, address, hostname, roles and open ports; mail clients."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli_helpers import Listener, run_cli
from tests.data_paths import CONFORMANCE
from tests.findings_helpers import at, capture, cli, ingest, roles, send_mail, write_config
from tests.pcap_helpers import aiosmtpd_server

GROUPS = """
[[groups]]
name = "dmz"
addresses = ["127.0.120.81"]

[[groups]]
name = "mail-and-web"
ports = ["25", "80/tcp"]

[[groups]]
name = "lab"
networks = ["127.0.120.80/29"]
exclude_groups = ["dmz"]

[[groups]]
name = "patriots"
hostnames = ["*.patriots.in"]

[[groups]]
name = "senders"
roles = ["smtp-client"]
"""


def test_static_and_dynamic_groups_in_the_inventory_export(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    database: str,
    listeners: Callable[[str, int], Listener],
) -> None:
    config = write_config(tmp_path, GROUPS)
    for host, ports in ((81, (25, 80)), (82, (25, 80)), (83, (80,))):
        for port in ports:
            listeners(at(host), port)
    cli(capsys, database, config, "scan", "subnet", "127.0.120.80/29", "--ports", "25,80")
    ingest(capsys, database, config, CONFORMANCE / "smtp-basic" / "trace.pcap")
    inventory = roles(capsys, database, config)
    assert inventory[at(81)]["groups"] == ["dmz", "mail-and-web"]
    assert inventory[at(82)]["groups"] == ["lab", "mail-and-web"]
    assert inventory[at(83)]["groups"] == ["lab"]
    assert inventory["74.53.140.153"]["groups"] == ["patriots"]
    assert inventory["10.10.1.4"]["groups"] == ["senders"]


def test_mail_clients_per_group_with_their_hosts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    config = write_config(
        tmp_path,
        '[[groups]]\nname = "office"\nnetworks = ["127.0.120.0/28"]\n'
        '[[groups]]\nname = "servers"\nnetworks = ["127.0.120.16/28"]\n',
    )
    with aiosmtpd_server(at(5)) as relay, capture(tmp_path, "office") as pcap:
        for host in (10, 11, 12, 20):
            send_mail(at(host), relay[:2], ["x@corp.test"])
    ingest(capsys, database, config, pcap, CONFORMANCE / "smtp-basic" / "trace.pcap")
    out = cli(capsys, database, config, "groups", "mail-clients", "--format", "json").out
    groups = {row["group"]: row for row in json.loads(out)}
    assert groups["office"] == {
        "group": "office",
        "count": 3,
        "addresses": [at(10), at(11), at(12)],
    }
    assert groups["servers"]["addresses"] == [at(20)]
    assert groups["ungrouped"]["addresses"] == ["10.10.1.4", "192.168.133.100"]
    text = cli(capsys, database, config, "groups", "mail-clients").out
    assert f"office: 3 ({at(10)} {at(11)} {at(12)})" in text


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('name = "x"\nnetworks = ["10.0.0.0/8"]\nroles = ["mailer"]\n', "groups.x.roles"),
        ('name = "x"\nnetworks = ["10.0.0.0/8"]\nexclude_groups = ["y"]\n', "not a group"),
        ('name = "x"\n', "no networks"),
        ('name = "x"\nnetworks = ["10.0.0.300/8"]\n', "groups.networks"),
    ],
)
def test_bad_group_config_is_bad_input(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str, body: str, message: str
) -> None:
    config = write_config(tmp_path, "[[groups]]\n" + body)
    result = run_cli(capsys, "--db", database, "--config", str(config), "findings", "list")
    assert result.code == 2
    assert message in result.err
