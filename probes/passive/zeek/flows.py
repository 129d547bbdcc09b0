"""conn.log lines added up into daily flows, held in memory up to a cap.

A conn line becomes part of the aggregate kept per (client, server, server
port, transport, UTC day). Flows are handed out as a :class:`FlowBatch`: a
day's an hour into the next day, about half of them when more than ``cap`` are
held (past days first, then the least used), the rest at the end; flows add up
in the store, so an early flush loses nothing.
Flows leave the aggregate as plain tuples (:data:`RawFlow`), cheap to keep and
to send to another process, and become :class:`~rolecall.probes.records.Flow` records
through a :class:`FlowMaker`.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from rolecall.probes.field_values import port_number, quoted
from rolecall.probes.passive.zeek.log_format import Block, Picker, Row
from rolecall.probes.records import Flow

SOURCE = "zeek"
# Zeek's conn_state values in which the responder sent something back.
_REPLY_STATES = frozenset({"S1", "S2", "S3", "SF", "REJ", "RSTO", "RSTR", "RSTRH", "SHR"})
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_BUSY = 64  # connections past which flows are all alike busy when choosing what to evict
_MAX = (1 << 63) - 1  # what a counter (and the store's INTEGER) holds
_LATE = 3600.0  # seconds into a day after which lines of the day before are rare
_NEVER = float("inf")

_FlowKey = tuple[str, str, str, str, int]  # client, server, raw port and transport, epoch day
RawFlow = tuple[str, str, str, str, int, int, int, int, bool, float, float]
"""A flow as plain values: its key, then connections, packets, bytes, answered, first, last."""
Address = Callable[[str, str], str]
"""Checks and canonicalises an address field (ValueError naming the field if it is not one)."""
Time = Callable[[str], datetime]
"""Reads a Zeek time field (ValueError if it is not one)."""


@dataclass(frozen=True, slots=True)
class FlowBatch:
    """Flows flushed from the aggregate, in first-seen order (to be taken before the next line)."""

    rows: Iterator[RawFlow]


class FlowAggregate:
    """The conn lines of one file, added up per flow key.

    The counters live in typed arrays, one slot per held flow (275 bytes a
    flow all told, measured, against 383 as a dict of tuples): the same memory
    holds 40% more flows, so fewer are flushed early and written twice.
    """

    def __init__(self, cap: int, addresses: dict[str, str], address: Address, time: Time) -> None:
        self.cap = cap
        self.addresses = addresses  # the caller's cache of canonical addresses, read first
        self.address = address
        self.time = time
        self.slots: dict[_FlowKey, int] = {}
        self.days: dict[int, int] = {}  # one int object per day, shared by the keys
        self.newest = -(1 << 62)  # the latest day a flow was begun on
        self.past_due = _NEVER  # when the flows of days before the newest are flushed
        self.conns, self.packets, self.octets = array("q"), array("q"), array("q")
        self.first, self.last, self.answered = array("d"), array("d"), bytearray()

    def add(self, block: Block, pick: Picker, values: list[str]) -> Sequence[FlowBatch]:
        """Add one connection to its flow; returns flows only when the aggregate is flushed."""
        row = pick(values)
        ts, client, server, port, proto, state, opkts, rpkts, oip, rip, _ob, _rb = row
        try:  # the common case: every number present
            moment = float(ts)
            day = int(moment // 86400)  # ValueError for inf and nan
            replied, sent, inbound, outbound = int(rpkts), int(opkts), int(oip), int(rip)
            if replied | sent | inbound | outbound < 0:  # negative if any one is
                raise ValueError
            packets = sent + replied
            size = inbound + outbound
        except ValueError:
            moment, replied, packets, size = self._numbers(block, row)
            day = int(moment // 86400)
        # Looked up as written first: the addresses of a held key are canonical and
        # checked, and Zeek writes them canonically, so a hit needs no more checking.
        slot = self.slots.get((client, server, port, proto, day))
        if slot is None:
            known = self.addresses
            key = (
                known.get(client) or self.address(client, "id.orig_h"),
                known.get(server) or self.address(server, "id.resp_h"),
                port,
                proto,
                day,
            )
            slot = self.slots.get(key)
            if slot is None:
                return self._begin(block, key, ts, moment, packets, size, replied, state)
        packets += self.packets[slot]
        size += self.octets[slot]
        if packets > _MAX or size > _MAX:
            raise ValueError(f"the flow's packet or byte count passes {_MAX}")
        self.packets[slot] = packets
        self.octets[slot] = size
        self.conns[slot] += 1
        if replied > 0 or state in _REPLY_STATES:
            self.answered[slot] = 1
        if moment < self.first[slot]:
            self.first[slot] = moment
        elif moment > self.last[slot]:
            self.last[slot] = moment
        return ()

    def _begin(
        self,
        block: Block,
        key: _FlowKey,
        ts: str,
        moment: float,
        packets: int,
        size: int,
        replied: int,
        state: str,
    ) -> Sequence[FlowBatch]:
        """Check a connection that begins a flow and give the flow a slot."""
        client, server, port, proto, day = key
        port_number(port, "id.resp_p")
        if proto == block.unset_field:
            raise ValueError("proto is unset")
        if packets > _MAX or size > _MAX:
            raise ValueError(f"packet or byte count out of range ({packets}, {size})")
        epoch_time(ts, moment)  # every time under this key falls on the same, checked, day
        # interned, the port and transport strings of all held flows are shared
        day = self.days.setdefault(day, day)
        self.slots[(client, server, sys.intern(port), sys.intern(proto), day)] = len(self.conns)
        self.conns.append(1)
        self.packets.append(packets)
        self.octets.append(size)
        self.answered.append(replied > 0 or state in _REPLY_STATES)
        self.first.append(moment)
        self.last.append(moment)
        if day > self.newest:
            self.newest = day
            self.past_due = day * 86400 + _LATE
        elif moment >= self.past_due:
            # well into a new day: yesterday's flows are written now, not at the end,
            # which spreads the writing over the read (a line that comes later still
            # adds up in the store)
            self.past_due = _NEVER
            return (self.flush_past_days(),)
        if len(self.slots) > self.cap:
            return (self.evict(),)
        return ()

    def _numbers(self, block: Block, row: Row) -> tuple[float, int, int, int]:
        """Time, reply packets, packets and bytes of a conn line with some of them unset."""
        ts, opkts, rpkts, oip, rip, obytes, rbytes = row[0], *row[6:]
        number = block.number
        try:
            moment = float(ts)
        except ValueError:
            moment = self.time(ts).timestamp()
        if not math.isfinite(moment):
            raise ValueError(f"ts {quoted(ts)} is not a time")
        replied = number(rpkts, "resp_pkts")
        if oip != block.unset_field:
            size = number(oip, "orig_ip_bytes") + number(rip, "resp_ip_bytes")
        else:  # Zeek without the IP-level counters: payload bytes are what is left
            size = number(obytes, "orig_bytes") + number(rbytes, "resp_bytes")
        return moment, replied, number(opkts, "orig_pkts") + replied, size

    def evict(self) -> FlowBatch:
        """Hand out and forget about half the held flows, in first-seen order.

        Flows of days before the newest go first (their day is over), then the
        least used: keeping the busy flows (a resolver, a popular site)
        aggregating is what keeps the number of rows written low.
        """
        conns, newest = self.conns, self.newest
        # how many of today's flows have each connection count (the busiest lumped together)
        counts = Counter(min(conns[s], _BUSY) for k, s in self.slots.items() if k[4] >= newest)
        taken = len(self.slots) - counts.total()
        most = 0
        while taken < len(self.slots) // 2 and most < _BUSY:
            most += 1
            taken += counts[most]
        return FlowBatch(self._release(newest, _BUSY if most >= _BUSY else most))

    def flush_past_days(self) -> FlowBatch:
        """Hand out and forget the flows of days before the newest."""
        return FlowBatch(self._release(self.newest, 0))

    def flush(self) -> FlowBatch:
        """Hand out and forget every held flow, in first-seen order."""
        return FlowBatch(self._release(self.newest + 1, 0))

    def _release(self, before: int, most: int) -> Iterator[RawFlow]:
        """Yield, then forget, the flows of days before ``before`` or of ``most`` conns or fewer.

        Lazily, so that what is handed out is never all in memory at once; the
        caller takes every flow before it adds another line.
        """
        conns, packets, octets = self.conns, self.packets, self.octets
        first, last, answered = self.first, self.last, self.answered
        kept: dict[_FlowKey, int] = {}
        for key, s in self.slots.items():
            if key[4] < before or conns[s] <= most or most >= _BUSY:
                yield (*key, conns[s], packets[s], octets[s], answered[s] == 1, first[s], last[s])
            else:
                kept[key] = s
        self._keep(list(kept.values()))
        self.slots = dict(zip(kept, range(len(kept)), strict=True))

    def _keep(self, slots: list[int]) -> None:
        """Keep only these slots' counters, renumbered from 0 in this order."""
        self.conns = array("q", [self.conns[s] for s in slots])
        self.packets = array("q", [self.packets[s] for s in slots])
        self.octets = array("q", [self.octets[s] for s in slots])
        self.first = array("d", [self.first[s] for s in slots])
        self.last = array("d", [self.last[s] for s in slots])
        self.answered = bytearray(self.answered[s] for s in slots)


class FlowMaker:
    """Turns raw flows into Flow records, with the day dates cached."""

    def __init__(self) -> None:
        self.days: dict[int, date] = {}

    def __call__(self, raw: RawFlow) -> Flow:
        """The Flow record of one raw flow."""
        client, server, port, transport, day, count, packets, size, answered, first, last = raw
        stamp = datetime.fromtimestamp
        return Flow(
            client,
            server,
            int(port),
            transport.lower(),
            self.days.get(day) or self._day(day),
            SOURCE,
            stamp(first, UTC),
            stamp(last, UTC),
            count,
            packets,
            size,
            answered,
        )

    def _day(self, day: int) -> date:
        """The date ``day`` days after the epoch (cached)."""
        known = self.days.get(day)
        if known is None:
            known = self.days[day] = date.fromordinal(_EPOCH_ORDINAL + day)
        return known


def epoch_time(raw: str, seconds: float) -> datetime:
    """Seconds since the epoch as a UTC datetime (ValueError if out of range)."""
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"ts {quoted(raw)} is out of range") from None
