"""The console's host page and search, served for real, against what the exports say."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import markupsafe
import pytest

from rolecall.inventory.findings import acknowledge
from rolecall.inventory.settings import DeriveSettings
from rolecall.inventory.store import Store
from rolecall.orchestrator.config import Config, ServeConfig
from rolecall.probes.records import (
    ConnectRequest,
    Flow,
    HostName,
    Observation,
    Service,
    SmtpTransaction,
)
from tests.cli_helpers import cli_json
from tests.console_helpers import console_client
from tests.report_helpers import GROUPS, HOSTILE, UNTIL, build_inventory

ATTRIBUTE = '"><img src=x onerror=alert(1)>'
PROXY = "10.20.0.5"
V6_HOST = "2001:db8:5::25"
V6_CLIENT = "2001:db8:7::9"
SEEN = UNTIL - timedelta(days=2)
PAGE_SIZE = 10


def _extra_records() -> list[Any]:
    """A CONNECT proxy with a hostile banner and certificate, and IPv6 mail with hostile text."""
    records: list[Any] = [
        Service(
            PROXY, 3128, "tcp", "probe", SEEN, "http-proxy", banner="HTTP/1.1 200 " + ATTRIBUTE
        ),
        Service(PROXY, 443, "tcp", "probe", SEEN, "https", product="nginx", version="1.22"),
        Observation(
            PROXY,
            "tls-certificate",
            "probe",
            SEEN,
            443,
            "tcp",
            "CN=" + ATTRIBUTE,
            json.dumps({"subject": "CN=" + ATTRIBUTE, "issuer": "CN=Test CA", "not_after": "2027"}),
        ),
        HostName(PROXY, "Proxy-Gate.Corp.example", "probe", SEEN),
    ]
    for index in range(12):
        records.append(
            ConnectRequest(
                SEEN + timedelta(minutes=index),
                f"10.30.0.{index % 3 + 1}",
                50000 + index,
                PROXY,
                3128,
                "pcap",
                status=200,
                request_host=f"mx{index % 2}.example.com",
                request_port=25,
            )
        )
    for index in range(5):
        ts = SEEN + timedelta(hours=index)
        records.append(
            SmtpTransaction(
                ts,
                V6_CLIENT,
                41000 + index,
                V6_HOST,
                25,
                "pcap",
                mail_from="bulk@spam.example",
                rcpt_to=(f"victim{index % 2}@Target.example",),
                subject=ATTRIBUTE + " cheap pills",
                user_agent="Mass Mailer 2.0",
            )
        )
        records.append(Flow(V6_CLIENT, V6_HOST, 25, "tcp", ts.date(), "pcap", ts, ts, 4))
    return records


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Store]]:
    """The report tests' inventory plus the records above, derived, with one acknowledgement."""
    db = tmp_path_factory.mktemp("hosts") / "inventory.db"
    store = build_inventory(db)
    with store.writer() as writer:
        writer.add_all(_extra_records())
    store.derive(DeriveSettings(groups=GROUPS, inside=("10.0.0.0/8", "192.168.0.0/16")))
    with store.transaction("acknowledge") as connection:
        found = acknowledge(
            connection, "mass-mailer-software", "10.10.1.100", "known " + HOSTILE, datetime.now(UTC)
        )
        assert found is not None
    yield db, store
    store.close()


@pytest.fixture(scope="module")
def client(inventory: tuple[Path, Store]) -> Iterator[httpx.Client]:
    """A client of the console serving that inventory, ten rows a list."""
    with console_client(Config(serve=ServeConfig(page_size=PAGE_SIZE)), inventory[1]) as served:
        yield served


def _escaped(text: str) -> str:
    """Text as the console's templates write it into HTML."""
    return str(markupsafe.escape(text))


def _export(capsys: pytest.CaptureFixture[str], db: Path, what: str) -> list[dict[str, Any]]:
    """Rows of `rolecall export WHAT --format json`."""
    rows: list[dict[str, Any]] = cli_json(capsys, db, None, "export", what)
    return rows


def _host(client: httpx.Client, address: str) -> dict[str, Any]:
    """The JSON twin of a host page."""
    response = client.get(f"/api/hosts/{address}")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def test_services_certificates_and_names_are_what_the_exports_say(
    capsys: pytest.CaptureFixture[str], inventory: tuple[Path, Store], client: httpx.Client
) -> None:
    db, _ = inventory
    data = _host(client, PROXY)
    exported = [row for row in _export(capsys, db, "services") if row["address"] == PROXY]
    shown = [
        {key: row[key] for key in ("port", "transport", "protocol", "product", "banner", "source")}
        for row in data["services"]["rows"]
    ]
    wanted = [
        {key: row[key] for key in ("port", "transport", "protocol", "product", "banner", "source")}
        for row in exported
    ]
    assert sorted(shown, key=str) == sorted(wanted, key=str)
    assert len(wanted) == 2
    assert data["certificates"]["rows"][0]["subject"] == "CN=" + ATTRIBUTE
    assert data["certificates"]["rows"][0]["issuer"] == "CN=Test CA"
    inventory_row = next(row for row in _export(capsys, db, "inventory") if row["address"] == PROXY)
    assert [name["name"] for name in data["hostnames"]["rows"]] == inventory_row["hostnames"]
    assert data["groups"] == inventory_row["groups"]
    roles = {row["role"] for row in data["roles"]["rows"]}
    assert roles == set(inventory_row["roles"])


def test_proxy_offered_and_used_are_what_the_connect_and_socks_exports_say(
    capsys: pytest.CaptureFixture[str], inventory: tuple[Path, Store], client: httpx.Client
) -> None:
    db, _ = inventory
    connect = _export(capsys, db, "connect")
    offered = _host(client, PROXY)["proxies_offered"]
    assert [proxy["kind"] for proxy in offered] == ["connect"]
    wanted = Counter(row["client"] for row in connect if row["proxy"] == PROXY)
    peers = {peer["value"]: peer["count"] for peer in offered[0]["peers"]["rows"]}
    assert peers == dict(wanted)
    assert offered[0]["requests"] == sum(wanted.values()) == 12
    targets = {target["value"]: target["count"] for target in offered[0]["targets"]["rows"]}
    assert targets == {"mx0.example.com:25": 6, "mx1.example.com:25": 6}
    # The client side: what 10.30.0.1 used, and the SOCKS client of the conformance capture.
    used = _host(client, "10.30.0.1")["proxies_used"]
    assert used[0]["peers"]["rows"] == [{"value": f"{PROXY}:3128", "count": 4}]
    socks = [row for row in _export(capsys, db, "socks") if row["client"] == "10.0.0.55"]
    socks_used = _host(client, "10.0.0.55")["proxies_used"]
    assert socks_used[0]["kind"] == "socks"
    assert socks_used[0]["requests"] == len(socks) == 1
    proxy = f"{socks[0]['proxy']}:{socks[0]['proxy_port']}"
    assert socks_used[0]["peers"]["rows"] == [{"value": proxy, "count": 1}]
    page = client.get(f"/hosts/{PROXY}").text
    assert 'href="/hosts/10.30.0.1"' in page
    assert "mx0.example.com:25" in page


def test_mail_clusters_software_and_chart_are_what_the_exports_say(
    capsys: pytest.CaptureFixture[str], inventory: tuple[Path, Store], client: httpx.Client
) -> None:
    db, _ = inventory
    address = "10.10.1.101"
    data = _host(client, address)
    mail = [row for row in _export(capsys, db, "smtp") if row["client"] == address]
    assert data["mail"]["messages"] == len(mail) == 81
    agents = Counter(row["user_agent"] for row in mail)
    assert {a["value"]: a["count"] for a in data["mail"]["software"]["rows"]} == dict(agents)
    by_subject = next(c for c in data["mail_clusters"] if c["field"] == "subject")
    subjects = Counter(row["subject"] for row in mail)
    assert {c["value"]: c["messages"] for c in by_subject["clusters"]["rows"]} == dict(subjects)
    by_rcpt = next(c for c in data["mail_clusters"] if c["field"] == "rcpt")
    recipients = Counter(rcpt for row in mail for rcpt in row["rcpt_to"])
    assert {c["value"]: c["messages"] for c in by_rcpt["clusters"]["rows"]} == dict(recipients)
    flows = [row for row in _export(capsys, db, "flows") if row["client"] == address]
    per_day: Counter[str] = Counter()
    for row in flows:
        per_day[row["day"]] += row["connections"]
    chart = {point["day"]: point["connections"] for point in data["connections_per_day"]}
    assert len(chart) == 90
    assert {day: n for day, n in chart.items() if n} == dict(per_day)
    page = client.get(f"/hosts/{address}").text
    assert 'data-chart="host-connections" data-points="90"' in page
    last = max(per_day)
    assert f'data-day="{last}" data-value="{per_day[last]}"' in page


def test_findings_of_every_status_and_their_history(
    capsys: pytest.CaptureFixture[str], inventory: tuple[Path, Store], client: httpx.Client
) -> None:
    db, _ = inventory
    address = "10.10.1.100"
    data = _host(client, address)
    exported = [row for row in _export(capsys, db, "findings") if row["address"] == address]
    shown = {(row["rule"], row["status"]) for row in data["findings"]["rows"]}
    assert shown == {(row["rule"], row["status"]) for row in exported}
    assert {"acknowledged", "resolved", "open"} <= {status for _, status in shown}
    acked = next(row for row in data["findings"]["rows"] if row["status"] == "acknowledged")
    assert acked["note"] == "known " + HOSTILE
    assert "mail 10.10.1.100 -> 203.0.113.25:25" in acked["evidence_text"]
    events = data["finding_events"]["rows"]
    assert events[0]["action"] == "acknowledged"
    assert events[0]["note"] == "known " + HOSTILE
    assert {"opened", "resolved"} <= {event["action"] for event in events}
    page = client.get(f"/hosts/{address}").text
    assert "known " + _escaped(HOSTILE) in page


def test_hostile_text_is_escaped_in_html_and_intact_in_json(client: httpx.Client) -> None:
    proxy = client.get(f"/hosts/{PROXY}").text
    sender = client.get(f"/hosts/{V6_CLIENT}").text
    target = client.get("/hosts/10.10.1.100").text
    for page in (proxy, sender, target):
        assert "<img" not in page
        assert "<script>alert" not in page
    assert _escaped("HTTP/1.1 200 " + ATTRIBUTE) in proxy
    assert _escaped("CN=" + ATTRIBUTE) in proxy
    assert _escaped(ATTRIBUTE + " cheap pills") in sender
    assert _escaped(HOSTILE + ".example") in target
    assert _escaped("220 " + HOSTILE) in target
    banners = {row["port"]: row["banner"] for row in _host(client, PROXY)["services"]["rows"]}
    assert banners[3128] == "HTTP/1.1 200 " + ATTRIBUTE
    assert _host(client, "10.10.1.100")["hostnames"]["rows"][0]["name"] == HOSTILE + ".example"
    found = client.get("/search", params={"q": "script"}).text
    assert _escaped(HOSTILE + ".example") in found
    assert "<script>alert" not in found


def test_ipv6_host_in_any_spelling(client: httpx.Client) -> None:
    data = _host(client, "2001:DB8:7:0:0:0:0:9")
    assert data["address"] == V6_CLIENT
    assert data["mail"]["messages"] == 5
    assert data["mail"]["software"]["rows"] == [{"value": "Mass Mailer 2.0", "count": 5}]
    assert sum(point["connections"] for point in data["connections_per_day"]) == 20
    page = client.get(f"/hosts/{V6_CLIENT}")
    assert page.status_code == 200
    assert 'data-chart="host-connections" data-points="90"' in page.text


@pytest.mark.parametrize(
    ("path", "status", "sentence"),
    [
        ("/hosts/mail.example.com", 400, "address: 'mail.example.com' is not an IP address"),
        ("/hosts/10.1.2.3%25eth0", 400, "is not an IP address"),
        ("/hosts/10.99.99.99", 404, "no host 10.99.99.99 in the inventory"),
        ("/hosts/2001:db8::dead", 404, "no host 2001:db8::dead in the inventory"),
    ],
)
def test_bad_and_unknown_addresses_are_one_sentence(
    client: httpx.Client, path: str, status: int, sentence: str
) -> None:
    page = client.get(path)
    assert page.status_code == status
    assert _escaped(sentence) in page.text
    assert "Traceback" not in page.text
    twin = client.get("/api" + path)
    assert twin.status_code == status
    assert sentence in twin.json()["error"]


def test_search_by_address_goes_to_the_host(client: httpx.Client) -> None:
    page = client.get("/search", params={"q": " 2001:DB8:5::25 "}, follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == f"/hosts/{V6_HOST}"
    twin = client.get("/api/search", params={"q": "10.10.1.100"}).json()
    assert twin["kind"] == "address"
    assert twin["results"]["address"]["rows"] == ["10.10.1.100"]
    unknown = client.get("/search", params={"q": "10.99.99.99"}, follow_redirects=False)
    assert unknown.status_code == 200
    assert "No host" in unknown.text


def test_search_by_prefix_is_bounded_and_in_address_order(
    capsys: pytest.CaptureFixture[str], inventory: tuple[Path, Store], client: httpx.Client
) -> None:
    db, _ = inventory
    addresses = [row["address"] for row in _export(capsys, db, "inventory")]
    inside = [a for a in addresses if a.startswith("10.10.")]
    twin = client.get("/api/search", params={"q": "10.10.1.7/16"}).json()
    assert twin["kind"] == "prefix"
    assert twin["network"] == "10.10.0.0/16"
    prefix = twin["results"]["prefix"]
    assert prefix["total"] == len(inside) > PAGE_SIZE
    assert len(prefix["rows"]) == PAGE_SIZE
    assert prefix["more"] == len(inside) - PAGE_SIZE
    assert prefix["rows"][:3] == ["10.10.1.1", "10.10.1.4", "10.10.1.20"]
    page = client.get("/search", params={"q": "10.10.0.0/16"}).text
    assert f"{len(inside) - PAGE_SIZE} more hosts" in page
    v6 = client.get("/api/search", params={"q": "2001:db8::/32"}).json()["results"]["prefix"]
    assert v6["rows"] == [V6_HOST, V6_CLIENT]
    narrow = client.get("/api/search", params={"q": "2001:db8:7::/48"}).json()
    assert narrow["results"]["prefix"]["rows"] == [V6_CLIENT]


def test_search_by_hostname_subject_and_mail_address(client: httpx.Client) -> None:
    names = client.get("/api/search", params={"q": "proxy-GATE"}).json()["results"]
    assert names["hostname"]["rows"] == [{"address": PROXY, "name": "Proxy-Gate.Corp.example"}]
    assert names["subject"]["rows"] == []
    subject = client.get("/api/search", params={"q": "CHEAP PILLS"}).json()["results"]
    assert subject["subject"]["rows"] == [{"value": V6_CLIENT, "count": 5}]
    mail = client.get("/api/search", params={"q": "victim1@target"}).json()
    assert mail["kind"] == "mail address"
    assert mail["results"]["mail_address"]["rows"] == [{"value": V6_CLIENT, "count": 2}]
    sender = client.get("/api/search", params={"q": "@example.net"}).json()["results"]
    # 10 inside clients and 8.8.8.8 wrote to example.net: ten listed, one more.
    assert sender["mail_address"]["total"] == 11
    assert sender["mail_address"]["more"] == 1
    assert sender["mail_address"]["rows"][0] == {"value": "10.10.1.100", "count": 90}
    page = client.get("/search", params={"q": "cheap pills"}).text
    assert f'href="/hosts/{V6_CLIENT}"' in page


def test_empty_and_too_long_queries(client: httpx.Client) -> None:
    form = client.get("/search")
    assert form.status_code == 200
    assert 'name="q"' in form.text
    assert not re.search(r'<section id="results-', form.text)
    assert client.get("/api/search").json()["results"] == {}
    long = client.get("/search", params={"q": "a" * 201})
    assert long.status_code == 400
    assert "q: longer than 200 characters" in long.text
    assert client.get("/api/search", params={"q": "a" * 201}).status_code == 400
