"""The syslog and webhook outputs against real receivers on loopback."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from rolecall.alerts.event import AlertEvent
from rolecall.alerts.formats import rfc5424
from rolecall.alerts.outputs import syslog, webhook
from rolecall.alerts.outputs.common import AlertOutput, DeliveryError
from tests.alert_receivers import (
    HOST,
    HttpReceiver,
    SyslogReceiver,
    parse_cef,
    parse_syslog,
    tls_server,
)
from tests.test_alert_formats import HOSTILE, HOSTILE_SHOWN, hostile_event


def events(count: int, start: int = 1) -> list[AlertEvent]:
    """count hostile events with increasing sequence numbers."""
    return [hostile_event(sequence=start + n, address="192.0.2.7") for n in range(count)]


def free_port() -> int:
    """A port nothing listens on at HOST right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def syslog_output(port: int, **keys: Any) -> AlertOutput:
    """A syslog output to HOST:port with these settings."""
    settings = {"name": "siem", "type": "syslog", "host": HOST, "port": port, **keys}
    return syslog.open_output(syslog.Settings.model_validate(settings))


def webhook_output(url: str, **keys: Any) -> AlertOutput:
    """A webhook output to url with these settings, quick to back off."""
    settings = {"name": "hook", "type": "webhook", "url": url, "backoff_seconds": 0.01, **keys}
    return webhook.open_output(webhook.Settings.model_validate(settings))


@pytest.fixture
def receivers() -> Iterator[list[SyslogReceiver | HttpReceiver]]:
    """Receivers a test starts, stopped after it."""
    started: list[SyslogReceiver | HttpReceiver] = []
    yield started
    for receiver in started:
        receiver.stop()


def sequences_of_json(messages: list[bytes]) -> list[int]:
    """The event sequence numbers of syslog messages carrying ECS JSON."""
    return [json.loads(parse_syslog(m).text)["event"]["sequence"] for m in messages]


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_syslog_json_arrives_over_each_transport(
    transport: str, tmp_path: Path, receivers: list[Any]
) -> None:
    """Three events, three RFC 5424 messages in order; the hostile summary read back exactly."""
    context, ca_file = tls_server(tmp_path)
    receiver = SyslogReceiver(transport, tls=context if transport == "tls" else None)  # type: ignore[arg-type]
    receivers.append(receiver)
    tls = {"ca_file": str(ca_file)} if transport == "tls" else {}
    output = syslog_output(receiver.port, transport=transport, facility="local3", **tls)
    try:
        delivered = output.deliver(events(3))
    finally:
        output.close()
    assert (delivered.count, delivered.error) == (3, None)
    messages = receiver.wait_for(3)
    assert sequences_of_json(messages) == [1, 2, 3]
    parsed = parse_syslog(messages[0])
    assert parsed.priority == 19 * 8 + 2
    assert parsed.app_name == "rolecall"
    assert parsed.msgid == "opened"
    sd_id, params = parsed.structured_data[0]
    assert sd_id == syslog.SD_ID
    assert params == {"finding": "open_relay|x=1:192.0.2.7", "sequence": "1", "severity": "high"}
    document = json.loads(parsed.text)
    assert document["message"] == HOSTILE
    assert document["event"]["kind"] == "alert"
    assert document["source"]["ip"] == "192.0.2.7"
    assert receiver.errors == []


def test_syslog_cef_over_tcp(receivers: list[Any]) -> None:
    """The CEF message's extension reads back to the event's values."""
    receiver = SyslogReceiver("tcp")
    receivers.append(receiver)
    output = syslog_output(receiver.port, format="cef")
    assert output.deliver(events(2)).count == 2
    output.close()
    lines = [parse_syslog(m).text for m in receiver.wait_for(2)]
    header, extension = parse_cef(lines[1])
    assert header[4] == "open_relay|x=1"
    assert extension["msg"] == HOSTILE_SHOWN
    assert extension["src"] == "192.0.2.7"
    assert extension["cn1"] == "2"


def test_tls_with_the_wrong_ca_is_refused(tmp_path: Path, receivers: list[Any]) -> None:
    """A receiver whose certificate the CA file does not vouch for gets nothing: one sentence."""
    context, _ = tls_server(tmp_path / "real")
    _, other_ca = tls_server(tmp_path / "other", "impostor")
    receiver = SyslogReceiver("tls", tls=context)
    receivers.append(receiver)
    output = syslog_output(receiver.port, transport="tls", ca_file=str(other_ca))
    delivered = output.deliver(events(2))
    output.close()
    assert delivered.count == 0
    assert delivered.error is not None
    assert delivered.error.startswith(f"syslog receiver {HOST}:{receiver.port} over tls:")
    assert "certificate is not trusted" in delivered.error
    assert "\n" not in delivered.error
    assert receiver.messages == []


def test_tls_without_ca_file_trusts_only_the_system(tmp_path: Path, receivers: list[Any]) -> None:
    """With no ca_file a private CA's receiver is not trusted either."""
    context, _ = tls_server(tmp_path)
    receiver = SyslogReceiver("tls", tls=context)
    receivers.append(receiver)
    output = syslog_output(receiver.port, transport="tls")
    delivered = output.deliver(events(1))
    output.close()
    assert delivered.count == 0
    assert "certificate is not trusted" in str(delivered.error)


def test_syslog_receiver_down_then_back(receivers: list[Any]) -> None:
    """A down receiver: nothing sent, no exception, one sentence; once back, all in order."""
    port = free_port()
    output = syslog_output(port)
    down = output.deliver(events(3))
    assert down.count == 0
    assert down.error == f"syslog receiver {HOST}:{port} over tcp: connection refused"
    receiver = SyslogReceiver("tcp", port=port)
    receivers.append(receiver)
    assert output.deliver(events(3)).count == 3
    output.close()
    assert sequences_of_json(receiver.wait_for(3)) == [1, 2, 3]


def test_syslog_reconnects_after_the_receiver_restarts(receivers: list[Any]) -> None:
    """A receiver restarted between two deliveries gets the second on a new connection."""
    first = SyslogReceiver("tcp")
    output = syslog_output(first.port)
    assert output.deliver(events(2)).count == 2
    assert sequences_of_json(first.wait_for(2)) == [1, 2]
    first.stop()
    second = SyslogReceiver("tcp", port=first.port)
    receivers.append(second)
    delivered = output.deliver(events(2, start=3))
    output.close()
    assert (delivered.count, delivered.error) == (2, None)
    assert sequences_of_json(second.wait_for(2)) == [3, 4]
    assert first.messages == first.wait_for(2)


def test_an_oversized_event_fits_one_datagram_as_json(receivers: list[Any]) -> None:
    """Over UDP a huge summary is shortened so the datagram stays within the limit and parses."""
    receiver = SyslogReceiver("udp")
    receivers.append(receiver)
    huge = AlertEvent(**{**hostile_event().__dict__, "summary": "é" * 20_000})
    output = syslog_output(receiver.port, transport="udp")
    assert output.deliver([huge]).count == 1
    output.close()
    (message,) = receiver.wait_for(1)
    assert len(message) <= rfc5424.UDP_LIMIT
    document = json.loads(parse_syslog(message).text)
    assert document["message"] == "é" * syslog.COMPACT_SUMMARY


@pytest.mark.parametrize(
    ("keys", "sentence"),
    [
        ({"transport": "tcp", "ca_file": "/etc/hostname"}, "transport is tcp, not tls"),
    ],
)
def test_bad_syslog_settings_are_a_delivery_error(keys: dict[str, str], sentence: str) -> None:
    """Settings the output cannot use are refused when it is opened, in one sentence."""
    with pytest.raises(DeliveryError, match=sentence):
        syslog_output(514, **keys)


@pytest.mark.parametrize(
    "keys",
    [
        {"facility": "local9"},
        {"transport": "sctp"},
        {"app_name": "has space"},
        {"port": 70000},
        {"transport": "tls", "ca_file": "/nonexistent/ca.pem"},
    ],
)
def test_invalid_syslog_keys_are_refused(keys: dict[str, object]) -> None:
    """Values outside what syslog allows do not validate."""
    with pytest.raises(ValidationError):
        syslog.Settings.model_validate({"name": "s", "type": "syslog", "host": HOST, **keys})


def test_webhook_failing_twice_then_accepting(receivers: list[Any]) -> None:
    """503 twice, then 200: each event arrives once, in order, after three attempts."""
    receiver = HttpReceiver(fail_first=2)
    receivers.append(receiver)
    output = webhook_output(receiver.url, retries=3)
    delivered = output.deliver(events(3))
    output.close()
    assert (delivered.count, delivered.error) == (3, None)
    assert receiver.attempts == 3
    (request,) = receiver.wait_for(1)
    assert request.path == "/hook/SECRET-TOKEN"
    assert request.headers["Content-Type"] == "application/json"
    body = request.json()
    assert isinstance(body, list)
    assert [document["event"]["sequence"] for document in body] == [1, 2, 3]
    assert body[0]["message"] == HOSTILE
    assert body[0]["event"]["kind"] == "alert"


def test_webhook_batches_in_order(receivers: list[Any]) -> None:
    """250 events in batches of 100: three POSTs holding 1-100, 101-200, 201-250."""
    receiver = HttpReceiver()
    receivers.append(receiver)
    output = webhook_output(receiver.url, batch_size=100, headers={"Authorization": "Bearer t"})
    assert output.deliver(events(250)).count == 250
    output.close()
    requests = receiver.wait_for(3)
    sequences = [[d["event"]["sequence"] for d in r.json()] for r in requests]  # type: ignore[attr-defined]
    assert sequences == [list(range(1, 101)), list(range(101, 201)), list(range(201, 251))]
    assert requests[0].headers["Authorization"] == "Bearer t"


def test_webhook_gives_up_after_its_retries(receivers: list[Any]) -> None:
    """Still 503 after every retry: nothing counted, one sentence without the URL's secret path."""
    receiver = HttpReceiver(fail_first=10)
    receivers.append(receiver)
    output = webhook_output(receiver.url, retries=2)
    delivered = output.deliver(events(2))
    output.close()
    assert delivered.count == 0
    assert delivered.error == (
        f"webhook http://{HOST}:{receiver.port}: answered 503 Service Unavailable (after 3 tries)"
    )
    assert receiver.attempts == 3


def test_webhook_does_not_retry_a_client_error(receivers: list[Any]) -> None:
    """A 400 is the sender's fault: not retried, said in one sentence."""
    receiver = HttpReceiver(fail_first=5, status=400)
    receivers.append(receiver)
    output = webhook_output(receiver.url, retries=3)
    delivered = output.deliver(events(1))
    output.close()
    assert delivered.count == 0
    assert delivered.error == f"webhook http://{HOST}:{receiver.port}: answered 400 Bad Request"
    assert receiver.attempts == 1


def test_webhook_stops_at_the_first_batch_not_taken(receivers: list[Any]) -> None:
    """The second batch is refused: the count says only the first batch's events went."""
    receiver = HttpReceiver()
    receivers.append(receiver)
    output = webhook_output(receiver.url, batch_size=2, retries=0)
    assert output.deliver(events(2)).count == 2
    receiver.fail_first, receiver.status = 1, 429
    delivered = output.deliver(events(4, start=3))
    output.close()
    assert delivered.count == 0
    assert "answered 429" in str(delivered.error)


def test_webhook_down_is_a_sentence(receivers: list[Any]) -> None:
    """Nothing listens: retried, then one sentence, no exception."""
    port = free_port()
    output = webhook_output(f"http://{HOST}:{port}/x", retries=1)
    delivered = output.deliver(events(1))
    output.close()
    assert delivered.count == 0
    assert str(delivered.error).startswith(f"webhook http://{HOST}:{port}: ")
    assert str(delivered.error).endswith("(after 2 tries)")


def test_webhook_over_https_verifies_the_certificate(tmp_path: Path, receivers: list[Any]) -> None:
    """With the right CA file it delivers; with another CA it is refused and not retried."""
    context, ca_file = tls_server(tmp_path / "real")
    _, other_ca = tls_server(tmp_path / "other", "impostor")
    receiver = HttpReceiver(tls=context)
    receivers.append(receiver)
    trusted = webhook_output(receiver.url, ca_file=str(ca_file))
    assert trusted.deliver(events(1)).count == 1
    trusted.close()
    refused = webhook_output(receiver.url, ca_file=str(other_ca), retries=3)
    delivered = refused.deliver(events(1))
    refused.close()
    assert delivered.count == 0
    assert "certificate is not trusted" in str(delivered.error)
    assert "SECRET-TOKEN" not in str(delivered.error)
    assert receiver.attempts == 1


def test_webhook_slack_style_escapes_text(receivers: list[Any]) -> None:
    """Slack style: {"text": ...}, one line per event, &, < and > escaped, no raw controls."""
    receiver = HttpReceiver()
    receivers.append(receiver)
    output = webhook_output(receiver.url, style="slack")
    assert output.deliver(events(2)).count == 2
    output.close()
    (request,) = receiver.wait_for(1)
    payload = request.json()
    assert isinstance(payload, dict)
    assert list(payload) == ["text"]
    lines = payload["text"].split("\n")
    assert len(lines) == 2
    assert lines[0].startswith("[high] opened: open_relay|x=1 on 192.0.2.7: relay | x=1")
    assert "&lt;!channel&gt; &amp;" in lines[0]
    assert "<" not in payload["text"]
    assert "\x1b" not in payload["text"]
    assert "\r" not in payload["text"]


@pytest.mark.parametrize(
    "keys",
    [
        {"url": "ftp://example.org/"},
        {"url": "not a url"},
        {"url": "https://example.org/", "headers": {"X-Bad": "a\r\nInjected: 1"}},
        {"url": "https://example.org/", "headers": {"Bad Name": "v"}},
        {"url": "https://example.org/", "style": "teams"},
        {"url": "https://example.org/", "batch_size": 0},
    ],
)
def test_invalid_webhook_keys_are_refused(keys: dict[str, object]) -> None:
    """URLs that are not http(s), header injection and unknown styles do not validate."""
    with pytest.raises(ValidationError):
        webhook.Settings.model_validate({"name": "w", "type": "webhook", **keys})


def test_webhook_ca_file_over_http_is_a_delivery_error() -> None:
    """A CA file for a clear-text URL is a mistake said at opening."""
    with pytest.raises(DeliveryError, match="url is not https"):
        webhook_output("http://127.0.0.1:9/", ca_file="/etc/hostname")
