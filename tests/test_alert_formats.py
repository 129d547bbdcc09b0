"""Alert formats: ECS JSON, CEF and RFC 5424 keep hostile text as data, as receivers read it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rolecall import __version__
from rolecall.alerts.event import AlertEvent
from rolecall.alerts.formats import rfc5424
from rolecall.alerts.formats.cef import cef_line
from rolecall.alerts.formats.ecs import ecs_document
from tests.alert_receivers import ReceiverError, parse_cef, parse_syslog, read_frame

HOSTILE = 'relay | x=1 \\ ] " [a] \n line2 \r\n\x00 NUL \x1b[31m red ünïcödé 中文 <!channel> &'
"""Every character a format must escape or neutralise, and some it must leave alone."""
HOSTILE_SHOWN = HOSTILE.replace("\x00", "\u2400").replace("\x1b", "\u241b")
"""HOSTILE as CEF values carry it: NUL and ESC have no escape there, so they are shown."""
HOSTILE_ONE_LINE = HOSTILE_SHOWN.replace("\n", "\u240a").replace("\r", "\u240d")
"""HOSTILE where no line break may be: CEF header fields, syslog SD-PARAM values."""
ADDRESS = '10.0.0.1|x=y]"\\'
AT = datetime(2026, 9, 1, 12, 30, 5, 123456, tzinfo=UTC)


def hostile_event(sequence: int = 7, address: str = ADDRESS, severity: str = "high") -> AlertEvent:
    """An event whose every text field an attacker could have chosen."""
    return AlertEvent(
        sequence=sequence,
        action="opened",
        at=AT,
        rule="open_relay|x=1",
        address=address,
        severity=severity,
        summary=HOSTILE,
        roles=("smtp-server", "web|server"),
        groups=("dmz",),
        first_seen=datetime(2026, 8, 30, tzinfo=UTC),
        last_seen=AT,
        evidence=("observation:12", "pcap:/data/a b.pcap@1234", "zeek:CabcXYZ"),
        techniques=("T1071.003",),
        note="ack\nby ]soc[",
    )


def test_ecs_document_names_and_values() -> None:
    """ECS field names, numeric severity, the finding's id and sequence, the ATT&CK tags."""
    document = json.loads(json.dumps(ecs_document(hostile_event())))
    assert document["@timestamp"] == "2026-09-01T12:30:05.123Z"
    event = document["event"]
    assert event["kind"] == "alert"
    assert event["action"] == "opened"
    assert event["severity"] == 73
    assert event["sequence"] == 7
    assert event["id"] == f"open_relay|x=1:{ADDRESS}#7"
    assert event["start"] == "2026-08-30T00:00:00.000Z"
    assert event["end"] == "2026-09-01T12:30:05.123Z"
    assert document["rule"] == {"id": "open_relay|x=1", "name": "open_relay|x=1"}
    assert document["message"] == HOSTILE
    assert "source" not in document, "not an IP address: ECS ip fields would reject it"
    assert "host" not in document
    assert document["rolecall"]["address"] == ADDRESS
    assert ecs_document(hostile_event(address="2001:db8::25"))["source"] == {"ip": "2001:db8::25"}
    assert "source" not in ecs_document(hostile_event(address="group:dmz"))
    assert document["threat"]["technique"]["id"] == ["T1071.003"]
    assert document["rolecall"]["severity"] == "high"
    assert document["rolecall"]["roles"] == ["smtp-server", "web|server"]
    assert document["rolecall"]["groups"] == ["dmz"]
    assert document["rolecall"]["evidence"][1] == "pcap:/data/a b.pcap@1234"
    assert document["rolecall"]["note"] == "ack\nby ]soc["


@pytest.mark.parametrize(("severity", "number"), [("medium", 47), ("low", 21), ("info", 0)])
def test_ecs_severity_scale(severity: str, number: int) -> None:
    """Each severity has ECS's suggested number."""
    event = ecs_document(hostile_event(severity=severity))["event"]
    assert isinstance(event, dict)
    assert event["severity"] == number


def test_cef_line_round_trips_hostile_text() -> None:
    """Header and extension read back by a strict CEF parser equal what was sent."""
    line = cef_line(hostile_event())
    assert "\n" not in line
    assert "\r" not in line
    assert "\x00" not in line
    assert "\x1b" not in line
    header, extension = parse_cef(line)
    assert header == [
        "CEF:0",
        "rolecall",
        "rolecall",
        __version__,
        "open_relay|x=1",
        HOSTILE_ONE_LINE,
        "8",
    ]
    assert extension["msg"] == HOSTILE_SHOWN
    assert extension["shost"] == ADDRESS  # not an IP address, so not under src
    assert extension["act"] == "opened"
    assert extension["cs1"] == f"open_relay|x=1:{ADDRESS}"
    assert extension["cs1Label"] == "findingId"
    assert extension["cs2"] == "smtp-server,web|server"
    assert extension["cs4"] == "T1071.003"
    assert extension["cs6"] == "ack\nby ]soc["
    assert extension["cn1"] == "7"
    assert extension["rt"] == str(int(AT.timestamp() * 1000))


def test_cef_puts_ipv6_sources_under_their_own_key() -> None:
    """src is IPv4 only in CEF: an IPv6 source goes to c6a2, labelled."""
    _, extension = parse_cef(cef_line(hostile_event(address="2001:db8::25")))
    assert "src" not in extension
    assert extension["c6a2"] == "2001:db8::25"


@pytest.mark.parametrize(("severity", "number"), [("medium", "5"), ("low", "3"), ("info", "0")])
def test_cef_severity_scale(severity: str, number: str) -> None:
    """CEF's 0-10 severity: high 8, medium 5, low 3, info 0."""
    header, _ = parse_cef(cef_line(hostile_event(severity=severity)))
    assert header[6] == number


def test_the_cef_parser_refuses_what_is_not_escaped() -> None:
    """The test's parser is strict: it would catch an unescaped = or | or a raw line break."""
    with pytest.raises(ReceiverError):
        parse_cef("CEF:0|a|b|1|s|n|3|msg=a=b")
    with pytest.raises(ReceiverError):
        parse_cef("CEF:0|a|b|1|s|n|3|msg=a\nb")
    header, extension = parse_cef("CEF:0|a|b|1|s|n\\|x|3|msg=a|b")
    assert header[5] == "n|x"
    assert extension == {"msg": "a|b"}


TEXT = st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=60)


@given(summary=TEXT, note=TEXT)
def test_cef_values_round_trip_any_printable_text(summary: str, note: str) -> None:
    """Whatever printable text a summary or note holds comes back unchanged."""
    event = AlertEvent(**{**hostile_event().__dict__, "summary": summary, "note": note})
    header, extension = parse_cef(cef_line(event))
    assert header[5] == summary
    assert extension["msg"] == summary
    assert extension.get("cs6", "") == note


def test_syslog_message_fields_and_structured_data() -> None:
    """PRI from facility and severity, RFC 3339 time, SD-PARAM values unescaped equal the sent."""
    header = rfc5424.Header("local4", "sensor-1", "rolecall", "4242", "opened")
    element = rfc5424.structured_data(
        "rolecall@32473", {"finding": f"r:{ADDRESS}", "text": HOSTILE}
    )
    data = rfc5424.message(header, "medium", AT, [element], HOSTILE)
    parsed = parse_syslog(data)
    assert parsed.priority == 20 * 8 + 4
    assert parsed.timestamp == "2026-09-01T12:30:05.123456Z"
    assert (parsed.hostname, parsed.app_name, parsed.procid, parsed.msgid) == (
        "sensor-1",
        "rolecall",
        "4242",
        "opened",
    )
    assert parsed.structured_data == [
        ("rolecall@32473", {"finding": f"r:{ADDRESS}", "text": HOSTILE_ONE_LINE})
    ]
    assert parsed.text == HOSTILE
    assert not parsed.bom


def test_syslog_message_with_bom_and_unsafe_header_fields() -> None:
    """MSG-UTF8 starts with the BOM; header fields lose spaces, controls and non-ASCII."""
    header = rfc5424.Header("kern", "host name", "app\x00ü", "", "x" * 40)
    data = rfc5424.message(header, "info", AT, [], "ü", bom=True)
    parsed = parse_syslog(data)
    assert parsed.priority == 6
    assert parsed.hostname == "host_name"
    assert parsed.app_name == "app__"
    assert parsed.procid == "-"
    assert parsed.msgid == "x" * 32
    assert parsed.structured_data == []
    assert parsed.bom
    assert parsed.text == "ü"


def test_sd_names_are_checked() -> None:
    """A parameter name with a space, =, ] or quote is refused, not escaped."""
    for name in ("a b", "a=b", "a]", 'a"', "", "x" * 33):
        with pytest.raises(ValueError, match="SD name"):
            rfc5424.structured_data("id@1", {name: "v"})


@given(value=st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=80))
def test_sd_param_values_round_trip_any_printable_text(value: str) -> None:
    """Whatever printable text an SD-PARAM holds comes back unchanged."""
    element = rfc5424.structured_data("x@1", {"v": value})
    header = rfc5424.Header("user", "h", "a", "-", "-")
    parsed = parse_syslog(rfc5424.message(header, "low", AT, [element], "m"))
    assert parsed.structured_data == [("x@1", {"v": value})]


def test_octet_counting_frames_back_to_back() -> None:
    """Two framed messages in one stream read back as the two messages."""
    first, second = "ä] \n".encode(), b"second"
    stream = rfc5424.octet_counted(first) + rfc5424.octet_counted(second)
    assert stream.startswith(b"5 ")
    position = 0

    def read(size: int) -> bytes:
        nonlocal position
        chunk = stream[position : position + size]
        position += len(chunk)
        return chunk

    assert read_frame(read) == first
    assert read_frame(read) == second
    assert read_frame(read) is None


def test_a_datagram_is_cut_at_a_character_boundary() -> None:
    """An over-long UDP message is cut at the limit, never inside a UTF-8 sequence."""
    assert rfc5424.datagram(b"short", limit=10) == b"short"
    data = b"ab" + "€".encode() * 5
    cut = rfc5424.datagram(data, limit=6)
    assert cut == b"ab" + "€".encode()
    cut.decode("utf-8")
