"""HTTP CONNECT probe against real tinyproxy on loopback, a plain web server and hostile fakes."""

from __future__ import annotations

import dataclasses
import re
import time
import tracemalloc
from pathlib import Path

import pytest

from rolecall.probes.active.driver import run_probes
from rolecall.probes.records import Record
from tests.cli_helpers import run_cli
from tests.findings_helpers import findings, roles
from tests.probe_helpers import (
    FAST,
    LoopbackGate,
    detail_of,
    fake_proxy,
    observed,
    roles_of,
    services,
    tinyproxy,
    web_server,
)

CANARY = "127.0.160.1"
"""Where the canary listens in these tests: tinyproxy's log then names it."""
ON_CANARY = dataclasses.replace(FAST, canary_bind=CANARY)


def _connect_destinations(log: Path) -> list[str]:
    """Return every CONNECT destination tinyproxy logged ("host:port")."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return re.findall(r"Request \(file descriptor \d+\): CONNECT (\S+) HTTP", text)


def test_open_tinyproxy_relays_to_the_canary_and_nowhere_else(tmp_path: Path) -> None:
    """tinyproxy without auth: http-proxy, open (token verified), asked only for the canary."""
    with tinyproxy(tmp_path, "127.0.160.2", 3128) as log:
        records = run_probes([("127.0.160.2", 3128)], LoopbackGate(), ON_CANARY)
        time.sleep(0.2)
        destinations = _connect_destinations(log)
    assert observed(records, 3128, "protocol") == ["http-proxy"]
    assert observed(records, 3128, "http-proxy-relay") == ["relayed to canary"]
    detail = detail_of(records, 3128, "http-proxy-relay")
    assert detail["token_arrived"] is True
    assert str(detail["canary"]).startswith(f"{CANARY}:")
    assert destinations == [detail["canary"]]
    assert roles_of(records, 3128) == {"http-proxy", "http-proxy-open"}
    [found] = services(records, 3128)
    assert (found.protocol, found.product, found.auth) == ("http-proxy", "tinyproxy", "none")


def test_tinyproxy_with_basic_auth_is_auth_and_never_open(tmp_path: Path) -> None:
    """tinyproxy with BasicAuth answers 407: http-proxy-auth with its challenge, not open."""
    with tinyproxy(tmp_path, "127.0.160.3", 3128, user="alice", password="s3cret"):
        records = run_probes([("127.0.160.3", 3128)], LoopbackGate(), ON_CANARY)
    assert observed(records, 3128, "protocol") == ["http-proxy"]
    [challenge] = observed(records, 3128, "http-proxy-auth")
    assert challenge.startswith("Basic realm=")
    assert observed(records, 3128, "http-proxy-relay") == []
    assert roles_of(records, 3128) == {"http-proxy", "http-proxy-auth"}
    assert [s.auth for s in services(records, 3128)] == ["basic"]


def test_tinyproxy_refusing_connect_to_the_canary_port_is_a_proxy_not_open(
    tmp_path: Path,
) -> None:
    """ConnectPort 443 only: CONNECT to the canary gets 403; plain GET still proves a proxy."""
    with tinyproxy(tmp_path, "127.0.160.4", 8888, connect_ports=(443,)):
        records = run_probes([("127.0.160.4", 8888)], LoopbackGate(), ON_CANARY)
    assert observed(records, 8888, "protocol") == ["http-proxy"]
    assert observed(records, 8888, "http-proxy-relay") == ["refused"]
    detail = detail_of(records, 8888, "http-proxy-relay")
    assert detail["status_code"] == 403
    assert detail["forwarded_get_to_canary"] is True
    assert roles_of(records, 8888) == {"http-proxy"}


def test_plain_web_server_is_no_proxy(tmp_path: Path) -> None:
    """Python's HTTP server answers CONNECT with 501: a web server, never an HTTP proxy."""
    with web_server("127.0.160.5", 8080):
        records = run_probes([("127.0.160.5", 8080)], LoopbackGate(), ON_CANARY)
    assert observed(records, 8080, "protocol") == ["http"]
    assert observed(records, 8080, "http-proxy-relay") == []
    assert roles_of(records, 8080) == {"web-server"}


def test_proxy_answering_200_without_relaying_is_not_open() -> None:
    """A fake answering 200 then relaying nothing: an HTTP proxy whose relay is unverified."""
    with fake_proxy(b"HTTP/1.1 200 Connection established\r\n\r\n", "127.0.160.6") as fake:
        records = run_probes([("127.0.160.6", fake.server_address[1])], LoopbackGate(), ON_CANARY)
    port = fake.server_address[1]
    assert observed(records, port, "protocol") == ["http-proxy"]
    assert observed(records, port, "http-proxy-relay") == ["200 without relay"]
    assert detail_of(records, port, "http-proxy-relay")["token_arrived"] is False
    assert "http-proxy-open" not in roles_of(records, port)
    connects = [request for request in fake.requests if request.startswith("CONNECT ")]
    assert connects
    assert all(request.startswith(f"CONNECT {CANARY}:") for request in connects)


def test_page_answering_connect_with_200_is_no_proxy() -> None:
    """A server answering CONNECT with a 200 page (no tunnel) is not a proxy."""
    page = b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nContent-Length: 13\r\n\r\n<html></html>"
    with fake_proxy(page, "127.0.160.7") as fake:
        port = fake.server_address[1]
        records = run_probes([("127.0.160.7", port)], LoopbackGate(), ON_CANARY)
    assert "http-proxy" not in observed(records, port, "protocol")
    assert not {"http-proxy", "http-proxy-open"} & roles_of(records, port)


@pytest.mark.parametrize(
    ("reply", "close"),
    [
        pytest.param(b"HTTP/1.1 204 No Content\r\n\r\n", False, id="204"),
        pytest.param(b"HTTP/1.1 206 Partial Content\r\n\r\n", False, id="206"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", False, id="length-0"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            False,
            id="chunked-empty",
        ),
        pytest.param(b"HTTP/1.0 200 OK\r\n\r\n", True, id="bare-1.0-200-closed"),
        pytest.param(b"HTTP/1.1 200 Connection established\r\n\r\n", True, id="200-closed"),
    ],
)
def test_a_2xx_that_is_no_tunnel_answer_is_no_proxy(
    reply: bytes, close: bool, request: pytest.FixtureRequest
) -> None:
    """204, 206, body framing (RFC 9110 forbids it in a 2xx to CONNECT) or a close: no proxy."""
    address = f"127.0.161.{request.node.callspec.indices['reply'] + 1}"
    with fake_proxy(reply, address, close=close) as fake:
        port = fake.server_address[1]
        records = run_probes([(address, port)], LoopbackGate(), ON_CANARY)
    assert "http-proxy" not in observed(records, port, "protocol")
    assert observed(records, port, "http-proxy-relay") == []
    assert not {"http-proxy", "http-proxy-open"} & roles_of(records, port)


@pytest.mark.parametrize(
    "header",
    [
        "Via: 1.1 varnish (Varnish/7.1)",
        "Via: 1.1 www.example.test",
        "X-Squid-Error: ERR_INVALID_REQ 0",
        "Proxy-Connection: close",
        'Proxy-Authenticate: Basic realm="x"',
    ],
)
def test_a_web_server_refusing_connect_with_proxy_like_headers_is_no_proxy(
    header: str, request: pytest.FixtureRequest
) -> None:
    """Varnish, CDNs, Apache ProxyVia and reverse Squids add these to their own refusals."""
    address = f"127.0.162.{request.node.callspec.indices['header'] + 1}"
    reply = f"HTTP/1.1 405 Method Not Allowed\r\n{header}\r\nContent-Length: 0\r\n\r\n"
    with fake_proxy(reply.encode(), address) as fake:
        port = fake.server_address[1]
        records = run_probes([(address, port)], LoopbackGate(), ON_CANARY)
    assert "http-proxy" not in observed(records, port, "protocol")
    assert observed(records, port, "http-proxy-relay") == []
    assert not {"http-proxy", "http-proxy-auth"} & roles_of(records, port)


def test_a_refusal_naming_its_proxy_agent_is_a_refusing_proxy() -> None:
    """Proxy-Agent is how a forwarding proxy names itself in answer to CONNECT: a proxy."""
    reply = b"HTTP/1.1 403 Forbidden\r\nProxy-Agent: acme-proxy/2.0\r\nContent-Length: 0\r\n\r\n"
    with fake_proxy(reply, "127.0.160.30") as fake:
        port = fake.server_address[1]
        records = run_probes([("127.0.160.30", port)], LoopbackGate(), ON_CANARY)
    assert observed(records, port, "protocol") == ["http-proxy"]
    assert observed(records, port, "http-proxy-relay") == ["refused"]
    detail = detail_of(records, port, "http-proxy-relay")
    assert (detail["forwarded_get_to_canary"], detail["proxy_headers"]) == (False, ["proxy-agent"])
    assert roles_of(records, port) == {"http-proxy"}


def _one_reason(records: list[Record], port: int) -> str:
    """Return the reason of the port's one inconclusive CONNECT verdict."""
    assert observed(records, port, "http-proxy-relay") == ["inconclusive"]
    assert observed(records, port, "protocol") == []
    return str(detail_of(records, port, "http-proxy-relay")["reason"])


def test_megabyte_reply_line_is_one_reason_in_bounded_memory() -> None:
    """A 1 MB status line: one reason, the probe keeps at most a few bounded buffers."""
    reply = b"HTTP/1.1 200 " + b"A" * (1 << 20) + b"\r\n\r\n"
    with fake_proxy(reply, "127.0.160.8") as fake:
        port = fake.server_address[1]
        tracemalloc.start()
        try:
            records = run_probes([("127.0.160.8", port)], LoopbackGate(), ON_CANARY)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert "status line longer than 2048 bytes" in _one_reason(records, port)
    assert peak < 1 << 20


def test_megabyte_header_block_is_one_reason() -> None:
    """A 1 MB header block of short lines: one reason, never parsed to its end."""
    reply = b"HTTP/1.1 200 OK\r\n" + b"X-Pad: 0123456789\r\n" * 55000 + b"\r\n"
    with fake_proxy(reply, "127.0.160.9") as fake:
        port = fake.server_address[1]
        records = run_probes([("127.0.160.9", port)], LoopbackGate(), ON_CANARY)
    assert "header lines" in _one_reason(records, port)


def test_407_without_headers_is_one_reason() -> None:
    """A 407 with no Proxy-Authenticate: no auth claim, no proxy claim, one reason."""
    with fake_proxy(b"HTTP/1.1 407\r\n\r\n", "127.0.160.10") as fake:
        port = fake.server_address[1]
        records = run_probes([("127.0.160.10", port)], LoopbackGate(), ON_CANARY)
    assert _one_reason(records, port) == "407 without Proxy-Authenticate"
    assert roles_of(records, port) == set()


def test_reply_that_never_ends_is_one_reason_within_the_read_timeout() -> None:
    """A status line then nothing more, the connection held open: one reason, in bounded time."""
    endless = b"HTTP/1.1 200 Connection established\r\nVia: 1.1 x\r\n"
    with fake_proxy(endless, "127.0.160.11") as fake:
        port = fake.server_address[1]
        started = time.monotonic()
        records = run_probes([("127.0.160.11", port)], LoopbackGate(), ON_CANARY)
        taken = time.monotonic() - started
    assert "not finished within" in _one_reason(records, port)
    assert taken < FAST.host_budget


def test_ipv6_target_gets_an_ipv6_canary(tmp_path: Path) -> None:
    """tinyproxy on ::1: the canary follows the target's family and the relay is verified."""
    with tinyproxy(tmp_path, "::1", 3129) as log:
        records = run_probes([("::1", 3129)], LoopbackGate("::1/128"), FAST)
        time.sleep(0.2)
        destinations = _connect_destinations(log)
    assert observed(records, 3129, "http-proxy-relay") == ["relayed to canary"]
    canary = str(detail_of(records, 3129, "http-proxy-relay")["canary"])
    assert canary.startswith("[::1]:")
    assert destinations == [canary]


def test_scan_subnet_finds_open_and_password_http_proxies(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_path: Path
) -> None:
    """The real CLI: roles in the inventory export, open-http-proxy for the open one only."""
    with (
        tinyproxy(tmp_path, "127.0.160.20", 8118),
        tinyproxy(tmp_path, "127.0.160.21", 8118, user="alice", password="s3cret"),
    ):
        result = run_cli(
            capsys, "--db", str(db_path), "scan", "subnet", "127.0.160.20/31", "--ports", "8118"
        )
    assert result.code == 0, result.err
    held = roles(capsys, db_path, None)
    assert {"http-proxy", "http-proxy-open"} <= set(held["127.0.160.20"]["roles"])
    assert {"http-proxy", "http-proxy-auth"} <= set(held["127.0.160.21"]["roles"])
    assert "http-proxy-open" not in held["127.0.160.21"]["roles"]
    assert "web-server" not in held["127.0.160.20"]["roles"]
    found = findings(capsys, db_path)
    assert found["open-http-proxy", "127.0.160.20"]["severity"] == "high"
    assert ("open-http-proxy", "127.0.160.21") not in found
