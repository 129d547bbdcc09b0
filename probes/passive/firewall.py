"""Netfilter LOG lines in syslog or journal text, as flows and SMTP-deny facts (source "firewall").

Reads lines such as (syslog, then journalctl -o short-iso)::

    Nov 24 01:02:03 gw kernel: [12345.678] RC-DENY IN=eth1 OUT=eth0 SRC=... DST=...
        LEN=60 ... PROTO=TCP SPT=40000 DPT=25 WINDOW=64240 RES=0x00 SYN URGP=0
    2026-11-24T01:02:03+0000 gw kernel: RC-DENY IN=eth1 ...

The log prefix a rule writes says what the rule did: ``deny_prefixes`` and
``accept_prefixes`` in :class:`FirewallSettings`. Other lines (not netfilter,
or a prefix in neither list) are passed over; the second kind is counted in one
warning at the end. Plain or gzip'd files; lines over ``max_line`` skipped.

Emitted, aggregated in memory (bounded by ``aggregate_cap``; totals add up in
the store, so an early flush loses nothing):

- Flow per (SRC, DST, DPT, transport, UTC day), for deny and accept lines,
  ``answered=False`` (a LOG line never shows a reply); ``connections`` counts
  attempts (a TCP SYN without ACK, or any non-TCP packet), ``packets`` lines,
  ``bytes`` the LEN fields.
- Observation kind ``fw-smtp-deny`` per (SRC, DPT, DST, UTC day) for denied
  TCP to ``smtp_ports`` (25/465/587): address = SRC, port = DPT, transport
  "tcp", value = DST, count = denied packets, seen = the first of them,
  detail = {"first", "last", "prefix"}. Which direction is "outbound" is the
  rule's business: the prefix names the rule.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from rolecall.probes.field_values import ip_address, port_number, quoted
from rolecall.probes.passive.zeek.log_format import DEFAULT_MAX_LINE, read_lines
from rolecall.probes.records import Flow, Item, Observation, ReadWarning, Record

SOURCE = "firewall"
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, 1)}
_PRIORITY = re.compile(r"^<\d{1,3}>")
_BSD_TIME = re.compile(r"([A-Z][a-z]{2}) +(\d{1,2}) (\d\d):(\d\d):(\d\d) ")
_IN_FIELD = re.compile(r"(?:^|\s)IN=")
_KERNEL_STAMP = re.compile(r"^\s*\[\s*\d+\.\d+\]\s*")
_MAX_LEN = (1 << 32) + 39  # an IPv6 jumbogram with its header; IPv4 stops at 65535
_MAX_PREFIX = 64  # characters of the log prefix kept (netfilter allows 29)
_MAX_PROTO = 16  # characters of PROTO kept (a number or a name such as ICMPv6)


@dataclass(frozen=True, slots=True)
class FirewallSettings:
    """How netfilter LOG lines are read."""

    deny_prefixes: tuple[str, ...] = ("RC-DENY",)
    accept_prefixes: tuple[str, ...] = ("RC-ACCEPT",)
    year: int | None = None  # for syslog stamps without one; None: the latest year not ahead
    timezone: str = "UTC"  # of stamps without an offset
    smtp_ports: tuple[int, ...] = (25, 465, 587)
    aggregate_cap: int = 100_000
    max_line: int = DEFAULT_MAX_LINE

    def __post_init__(self) -> None:
        """Refuse a time zone that does not exist (ValueError, one sentence)."""
        _zone(self.timezone)


def _zone(name: str) -> tzinfo:
    """The named time zone; UTC needs no time zone database."""
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError):
        raise ValueError(f"Unknown time zone {name!r} for firewall logs.") from None


@dataclass(frozen=True, slots=True)
class _Packet:
    """The parts of one LOG line rolecall uses."""

    seen: datetime
    deny: bool
    prefix: str
    src: str
    dst: str
    dport: int
    transport: str
    length: int
    attempt: bool


def read_firewall(path: Path, settings: FirewallSettings) -> Iterator[Item]:
    """Yield flows and SMTP-deny observations (and warnings) from one syslog or journal file."""
    reader = _Reader(settings)
    for item in read_lines(path, settings.max_line):
        if isinstance(item, ReadWarning):
            yield item
            continue
        number, line = item
        if "SRC=" not in line or "IN=" not in line:
            continue
        try:
            packet = reader.parse(line)
        except (ValueError, OverflowError) as exc:
            yield ReadWarning(f"{path}:{number}", f"netfilter line skipped: {exc}")
            continue
        if packet is None:
            reader.unmatched += 1
            reader.first_unmatched = reader.first_unmatched or number
            continue
        yield from reader.add(packet)
    yield from reader.flush()
    if reader.unmatched:
        yield ReadWarning(
            f"{path}:{reader.first_unmatched}",
            f"{reader.unmatched} netfilter lines with a prefix in neither deny_prefixes "
            "nor accept_prefixes ignored",
        )


class _Reader:
    """Per-file state: time caches and the aggregates."""

    def __init__(self, settings: FirewallSettings) -> None:
        self.settings = settings
        self.zone = _zone(settings.timezone)
        self.now = datetime.now(UTC)
        self.stamps: dict[str, datetime] = {}
        self.flows: dict[tuple[str, str, int, str, date], list[Any]] = {}
        self.denies: dict[tuple[str, int, str, date], list[Any]] = {}
        self.unmatched = 0
        self.first_unmatched = 0

    def parse(self, line: str) -> _Packet | None:
        """One netfilter line; None if its prefix is not configured (ValueError if damaged)."""
        seen, rest = self._time(line)
        marker = _IN_FIELD.search(rest)
        if marker is None:
            raise ValueError("no IN= field")
        head, fields = rest[: marker.start()], rest[marker.start() :].split()
        if "kernel:" in head:
            head = head.split("kernel:", 1)[1]
        else:  # another logger (ulogd): the host name comes first
            head = head.split(None, 1)[1] if " " in head.strip() else ""
        prefix = _KERNEL_STAMP.sub("", head).strip()[:_MAX_PREFIX]
        if prefix.startswith(self.settings.deny_prefixes):
            deny = True
        elif prefix.startswith(self.settings.accept_prefixes):
            deny = False
        else:
            return None
        values: dict[str, str] = {}
        flags = set()
        for field in fields:
            name, equals, value = field.partition("=")
            if equals:
                values.setdefault(name, value)  # the IP header's LEN, not the UDP one after it
            else:
                flags.add(name)
        transport = values.get("PROTO", "").lower()[:_MAX_PROTO]
        dport = _port(values.get("DPT") or "0")
        length = _length(values.get("LEN") or "0")
        return _Packet(
            seen=seen,
            deny=deny,
            prefix=prefix,
            src=_address(values.get("SRC", ""), "SRC"),
            dst=_address(values.get("DST", ""), "DST"),
            dport=dport,
            transport=transport,
            length=length,
            attempt=transport != "tcp" or ("SYN" in flags and "ACK" not in flags),
        )

    def _time(self, line: str) -> tuple[datetime, str]:
        """The line's time in UTC, and the text after it."""
        if line.startswith("<"):  # a syslog priority, as forwarded lines keep it
            line = _PRIORITY.sub("", line, count=1)
        if line[:1].isdigit():
            stamp, _, rest = line.partition(" ")
            try:
                moment = datetime.fromisoformat(stamp)
            except ValueError:
                raise ValueError(f"time {quoted(stamp)} is not ISO 8601") from None
            local = moment if moment.tzinfo else moment.replace(tzinfo=self.zone)
            return local.astimezone(UTC), rest
        match = _BSD_TIME.match(line)
        if match is None:
            raise ValueError("no syslog time at the start")
        key = match.group(0)
        seen = self.stamps.get(key)
        if seen is None:
            seen = self._bsd_time(match)
            if len(self.stamps) > 65536:
                self.stamps.clear()
            self.stamps[key] = seen
        return seen, line[match.end() :]

    def _bsd_time(self, match: re.Match[str]) -> datetime:
        """A syslog "Mon DD HH:MM:SS" stamp, its year from settings or the latest not ahead."""
        month, day, hour, minute, second = match.groups()
        if month not in _MONTHS:
            raise ValueError(f"{quoted(month)} is not a month")
        year = self.settings.year or self.now.year
        fields = (_MONTHS[month], int(day), int(hour), int(minute), int(second))
        moment = datetime(year, *fields, tzinfo=self.zone).astimezone(UTC)
        if self.settings.year is None and (moment - self.now).days >= 1:
            moment = datetime(year - 1, *fields, tzinfo=self.zone).astimezone(UTC)
        return moment

    def add(self, packet: _Packet) -> list[Record]:
        """Count a packet into its flow (and its SMTP-deny fact); returns anything flushed."""
        day = packet.seen.date()
        key = (packet.src, packet.dst, packet.dport, packet.transport, day)
        flow = self.flows.get(key)
        if flow is None:
            flow = self.flows[key] = [0, 0, 0, packet.seen, packet.seen]
        flow[0] += packet.attempt
        flow[1] += 1
        flow[2] += packet.length
        flow[3], flow[4] = min(flow[3], packet.seen), max(flow[4], packet.seen)
        if packet.deny and packet.transport == "tcp" and packet.dport in self.settings.smtp_ports:
            deny_key = (packet.src, packet.dport, packet.dst, day)
            deny = self.denies.get(deny_key)
            if deny is None:
                deny = self.denies[deny_key] = [0, packet.seen, packet.seen, packet.prefix]
            deny[0] += 1
            deny[1], deny[2] = min(deny[1], packet.seen), max(deny[2], packet.seen)
        cap = self.settings.aggregate_cap
        if len(self.flows) > cap or len(self.denies) > cap:
            return list(self.flush(cap // 2 or 1))
        return []

    def flush(self, oldest: int = 0) -> Iterator[Record]:
        """Yield and forget the ``oldest`` aggregates of each kind (all if 0), first-seen first."""
        for key, (attempts, packets, size, first, last) in _take(self.flows, oldest):
            src, dst, dport, transport, day = key
            yield Flow(
                src, dst, dport, transport, day, SOURCE, first, last, attempts, packets, size
            )
        for deny_key, (count, first, last, prefix) in _take(self.denies, oldest):
            src, dport, dst, _day = deny_key
            detail = json.dumps(
                {"first": first.isoformat(), "last": last.isoformat(), "prefix": prefix}
            )
            yield Observation(src, "fw-smtp-deny", SOURCE, first, dport, "tcp", dst, detail, count)


def _take(held: dict[Any, list[Any]], oldest: int) -> list[tuple[Any, list[Any]]]:
    """Remove and return the first ``oldest`` entries of ``held`` (all if 0)."""
    if not oldest:
        taken = list(held.items())
        held.clear()
        return taken
    keys = list(itertools.islice(held, oldest))
    return [(key, held.pop(key)) for key in keys]


def _length(raw: str) -> int:
    """A LEN value: the length of an IP packet (ValueError if it cannot be one)."""
    if raw.isascii() and raw.isdigit() and len(raw) <= 10 and int(raw) <= _MAX_LEN:
        return int(raw)
    raise ValueError(f"LEN={quoted(raw)} is not the length of an IP packet")


def _address(text: str, field: str) -> str:
    """A SRC/DST value in canonical form (ValueError if it is not an address)."""
    try:
        return ip_address(text, field)
    except ValueError:
        raise ValueError(f"{field}={quoted(text)} is not an IP address") from None


def _port(raw: str) -> int:
    """A DPT value (ValueError if it is not a port)."""
    try:
        return port_number(raw, "DPT")
    except ValueError:
        raise ValueError(f"DPT={quoted(raw)} is not a port") from None
