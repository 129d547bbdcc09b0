"""Netfilter LOG lines from syslog and journal text become flows and SMTP-deny facts."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rolecall.probes.errors import InputError
from rolecall.probes.passive.firewall import FirewallSettings, read_firewall
from rolecall.probes.records import Flow, Observation, ReadWarning
from tests.zeek_helpers import split_items

MAC = "MAC=00:16:3e:aa:bb:cc:00:16:3e:dd:ee:ff:08:00"


def deny_line(stamp: str, src: str, dst: str, dport: int, *, prefix: str = "RC-DENY") -> str:
    """A kernel LOG line for a TCP SYN, as rsyslog writes it."""
    return (
        f"{stamp} gw kernel: [12345.678901] {prefix} IN=eth1 OUT=eth0 {MAC} SRC={src} DST={dst} "
        "LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID=54321 DF PROTO=TCP SPT=40000 "
        f"DPT={dport} WINDOW=64240 RES=0x00 SYN URGP=0\n"
    )


UDP_ACCEPT = (
    "2026-11-24T03:00:00+0000 gw kernel: RC-ACCEPT IN=eth1 OUT=eth0 SRC=192.0.2.7 "
    "DST=198.51.100.53 LEN=72 TOS=0x00 PREC=0x00 TTL=63 ID=1 PROTO=UDP SPT=5353 DPT=53 LEN=52\n"
)


def read(path: Path, **settings: object) -> tuple[list[object], list[ReadWarning]]:
    """Read a firewall log with the given settings (year 2026 unless said)."""
    chosen = FirewallSettings(**({"year": 2026} | settings))  # type: ignore[arg-type]
    records, warnings = split_items(read_firewall(path, chosen))
    return list(records), warnings


def test_smtp_denies_count_per_host_port_destination_and_day(tmp_path: Path) -> None:
    text = (
        deny_line("Nov 24 01:02:03", "192.0.2.5", "203.0.113.5", 25)
        + deny_line("Nov 24 01:02:04", "192.0.2.5", "203.0.113.5", 25)  # the SYN retried
        + deny_line("Nov 24 09:00:00", "192.0.2.5", "203.0.113.5", 25)
        + deny_line("Nov 24 09:00:01", "192.0.2.5", "203.0.113.6", 587)
        + deny_line("Nov 25 00:00:01", "192.0.2.5", "203.0.113.5", 25)
        + deny_line("Nov 24 09:00:02", "192.0.2.5", "203.0.113.6", 443)
        + "Nov 24 09:00:03 gw sshd[812]: Accepted publickey for admin from 192.0.2.9\n"
        + UDP_ACCEPT
    )
    path = tmp_path / "syslog"
    path.write_text(text)
    records, warnings = read(path)
    assert warnings == []
    denies = [r for r in records if isinstance(r, Observation)]
    assert [(o.address, o.kind, o.port, o.transport, o.value, o.count, o.seen) for o in denies] == [
        (
            "192.0.2.5",
            "fw-smtp-deny",
            25,
            "tcp",
            "203.0.113.5",
            3,
            datetime(2026, 11, 24, 1, 2, 3, tzinfo=UTC),
        ),
        (
            "192.0.2.5",
            "fw-smtp-deny",
            587,
            "tcp",
            "203.0.113.6",
            1,
            datetime(2026, 11, 24, 9, 0, 1, tzinfo=UTC),
        ),
        (
            "192.0.2.5",
            "fw-smtp-deny",
            25,
            "tcp",
            "203.0.113.5",
            1,
            datetime(2026, 11, 25, 0, 0, 1, tzinfo=UTC),
        ),
    ]
    assert json.loads(denies[0].detail) == {
        "first": "2026-11-24T01:02:03+00:00",
        "last": "2026-11-24T09:00:00+00:00",
        "prefix": "RC-DENY",
    }
    flows = {(f.server, f.server_port, f.day): f for f in records if isinstance(f, Flow)}
    assert len(flows) == 5
    smtp = flows["203.0.113.5", 25, date(2026, 11, 24)]
    assert (smtp.client, smtp.connections, smtp.packets, smtp.bytes) == ("192.0.2.5", 3, 3, 180)
    assert (smtp.source, smtp.answered, smtp.transport) == ("firewall", False, "tcp")
    dns = flows["198.51.100.53", 53, date(2026, 11, 24)]
    assert (dns.client, dns.transport, dns.bytes, dns.connections) == ("192.0.2.7", "udp", 72, 1)
    assert dns.first_seen == datetime(2026, 11, 24, 3, tzinfo=UTC)


def test_other_prefixes_and_damage_are_reported_with_their_line(tmp_path: Path) -> None:
    text = (
        deny_line("Nov 24 01:00:00", "192.0.2.5", "203.0.113.5", 25, prefix="OTHER")
        + deny_line("Nov 24 01:00:01", "192.0.2.999", "203.0.113.5", 25)
        + deny_line("Xyz 24 01:00:02", "192.0.2.5", "203.0.113.5", 25)
        + deny_line("Nov 24 01:00:03", "192.0.2.5", "203.0.113.5", 465)
        + deny_line("Nov 24 01:00:04", "192.0.2.5", "203.0.113.5", 70000)
    )
    path = tmp_path / "messages"
    path.write_text(text)
    records, warnings = read(path)
    assert [r.port for r in records if isinstance(r, Observation)] == [465]
    assert [(w.where, w.message) for w in warnings] == [
        (f"{path}:2", "netfilter line skipped: SRC='192.0.2.999' is not an IP address"),
        (f"{path}:3", "netfilter line skipped: 'Xyz' is not a month"),
        (f"{path}:5", "netfilter line skipped: DPT='70000' is not a port"),
        (
            f"{path}:1",
            "1 netfilter lines with a prefix in neither deny_prefixes nor accept_prefixes ignored",
        ),
    ]


def test_prefixes_time_zone_ipv6_and_icmp(tmp_path: Path) -> None:
    text = (
        deny_line("Nov 24 01:02:03", "2001:db8::5", "2001:db8:ffff::25", 25, prefix="[UFW BLOCK]")
        + "Nov 24 01:02:04 gw kernel: [UFW ALLOW] IN=eth1 OUT=eth0 SRC=192.0.2.8 "
        "DST=198.51.100.1 LEN=84 TOS=0x00 PREC=0x00 TTL=64 ID=0 DF PROTO=ICMP TYPE=8 CODE=0 "
        "ID=7 SEQ=1\n"
    )
    path = tmp_path / "ufw.log.gz"
    path.write_bytes(gzip.compress(text.encode()))
    records, warnings = read(
        path,
        deny_prefixes=("[UFW BLOCK]",),
        accept_prefixes=("[UFW ALLOW]",),
        timezone="Europe/Berlin",
    )
    assert warnings == []
    first = datetime(2026, 11, 24, 0, 2, 3, tzinfo=UTC)  # 01:02:03 in Berlin is 00:02:03 UTC
    assert records[0] == Flow(
        "2001:db8::5",
        "2001:db8:ffff::25",
        25,
        "tcp",
        date(2026, 11, 24),
        "firewall",
        first,
        first,
        connections=1,
        packets=1,
        bytes=60,
    )
    icmp = records[1]
    assert isinstance(icmp, Flow)
    assert (icmp.server, icmp.server_port, icmp.transport, icmp.connections) == (
        "198.51.100.1",
        0,
        "icmp",
        1,
    )
    assert records[2] == Observation(
        "2001:db8::5",
        "fw-smtp-deny",
        "firewall",
        first,
        25,
        "tcp",
        "2001:db8:ffff::25",
        records[2].detail,  # type: ignore[attr-defined]
        1,
    )


def test_forwarded_and_ulogd_lines(tmp_path: Path) -> None:
    forwarded = "<4>" + deny_line("Nov 24 01:02:03", "192.0.2.5", "203.0.113.5", 25)
    ulogd = deny_line("Nov 24 01:02:04", "192.0.2.6", "203.0.113.5", 25).replace(
        " kernel: [12345.678901]", ""
    )
    precise = deny_line("2026-11-24T02:02:05.250000+0100", "192.0.2.7", "203.0.113.5", 25)
    path = tmp_path / "ulogd.log"
    path.write_text(forwarded + ulogd + precise)
    records, warnings = read(path)
    assert warnings == []
    denies = [(o.address, o.seen) for o in records if isinstance(o, Observation)]
    at = datetime(2026, 11, 24, 1, 2, 3, tzinfo=UTC)
    assert denies == [
        ("192.0.2.5", at),
        ("192.0.2.6", at + timedelta(seconds=1)),
        ("192.0.2.7", at + timedelta(seconds=2, microseconds=250000)),
    ]


def test_a_syslog_stamp_without_year_takes_the_latest_year_not_ahead(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    ahead = now + timedelta(days=3)
    stamp = f"{ahead:%b} {ahead.day:2d} {ahead:%H:%M:%S}"  # syslog pads the day with a space
    path = tmp_path / "syslog"
    path.write_text(deny_line(stamp, "192.0.2.5", "203.0.113.5", 25))
    records, warnings = read(path, year=None)
    assert warnings == []
    assert isinstance(records[0], Flow)
    assert records[0].first_seen.year == ahead.year - 1


def test_the_aggregates_stay_bounded_and_add_up(tmp_path: Path) -> None:
    lines = [
        deny_line(f"Nov 24 01:{i // 60:02d}:{i % 60:02d}", f"192.0.2.{i % 40}", "203.0.113.5", 25)
        for i in range(600)
    ]
    path = tmp_path / "syslog"
    path.write_text("".join(lines))
    records, _ = read(path, aggregate_cap=8)
    denies = [r for r in records if isinstance(r, Observation)]
    assert len(denies) > 40
    assert sum(o.count for o in denies) == 600
    assert sum(f.packets for f in records if isinstance(f, Flow)) == 600


def test_unreadable_input_and_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="Cannot read"):
        list(read_firewall(tmp_path / "missing.log", FirewallSettings()))
    with pytest.raises(ValueError, match="Unknown time zone"):
        FirewallSettings(timezone="Mars/Olympus")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.one_of(
            st.text(
                alphabet=st.characters(blacklist_characters="\n\r", blacklist_categories=["Cs"]),
                max_size=200,
            ),
            st.builds(
                lambda stamp, src, dst, port: deny_line(stamp, src, dst, port).rstrip("\n"),
                st.sampled_from(["Nov 24 01:02:03", "Feb 30 01:02:03", "Nov 99 99:99:99"]),
                st.sampled_from(["192.0.2.5", "::1", "", "1.2.3", "x" * 50]),
                st.sampled_from(["203.0.113.5", "SRC=1"]),
                st.integers(min_value=-5, max_value=70000),
            ),
            st.builds(
                lambda text: f"2026-11-24T01:02:03+0000 gw kernel: RC-DENY IN= SRC= {text}",
                st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=80),
            ),
        ),
        max_size=30,
    )
)
def test_any_damage_gives_warnings_never_an_exception(tmp_path: Path, lines: list[str]) -> None:
    path = tmp_path / "syslog"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogateescape")
    for item in read_firewall(path, FirewallSettings(year=2026, max_line=300)):
        assert isinstance(item, ReadWarning) or item.source == "firewall"
