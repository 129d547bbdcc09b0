"""Zeek logs mapped to rolecall records (source "zeek"): the same records the pcap reader makes.

- smtp.log → SmtpTransaction; socks.log → SocksRequest (the password only when
  ``ZeekSettings.keep_passwords``); conn.log → Flow, one line per connection,
  aggregated in memory per (client, server, port, transport, UTC day); when
  more than ``flow_cap`` keys are held the older half is flushed, the rest at
  the end (flows add up in the store, so an early flush loses nothing);
  known_services.log → Service (protocol: Zeek's service names, lower case,
  sorted, comma-joined); dns.log → HostName for each address answering an A or
  AAAA query.

Observation kinds emitted:

- ``host-up`` (known_hosts.log): address = the host.
- ``software`` (software.log): address = the host, port = host_p, value =
  "software_type:name version" (e.g. "HTTP::BROWSER:Firefox 120.0.1"),
  detail = {"unparsed_version"}.
- ``mail-client-software``: the same for SMTP::MAIL_CLIENT entries, kept apart
  because they are weaker evidence (see ``_software``).
- ``dns-query`` (dns.log): address = the client, port/transport = the DNS
  server's, value = the DNS server's address, detail = {"query", "qtype", "rcode"}.
- ``dns-mx-query`` (dns.log): address = the client, value = the domain whose MX
  was asked for (lower case): a host looking up mail servers itself.
- ``http-host`` (http.log): address = the server, port = its port, value =
  the Host header (lower case).
- ``http-user-agent`` (http.log): address = the client, port = the server's
  port, value = the User-Agent, detail = {"server", "host"}.
- ``tls-sni`` (ssl.log): address = the server, port = its port, value = the
  server name the client asked for (lower case).
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path

from probes.records import (
    Flow,
    HostName,
    Item,
    Observation,
    Record,
    Service,
    SmtpTransaction,
    SocksRequest,
)
from probes.zeek_log import DEFAULT_MAX_LINE, Block, LineHandler, Picker, Row, picker, read_log

SOURCE = "zeek"
# Zeek's conn_state values in which the responder sent something back.
_REPLY_STATES = frozenset({"S1", "S2", "S3", "SF", "REJ", "RSTO", "RSTR", "RSTRH", "SHR"})
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_CACHE_CAP = 65536


@dataclass(frozen=True, slots=True)
class ZeekSettings:
    """How Zeek logs are read."""

    keep_passwords: bool = False
    flow_cap: int = 200_000  # about 100 MiB of held flows
    max_line: int = DEFAULT_MAX_LINE


Handler = Callable[[Block, Picker, list[str]], Sequence[Record]]
_FlowKey = tuple[str, str, str, str, int]  # client, server, raw port and transport, epoch day
_FlowCounts = tuple[int, int, int, bool, float, float]  # conns, packets, bytes, answered, span


def read_zeek(path: Path, settings: ZeekSettings) -> Iterator[Item]:
    """Yield the records (and warnings for damaged lines) of one Zeek log, TSV or JSON."""
    mapper = _Mapper(settings)
    yield from read_log(path, mapper.project, settings.max_line)
    yield from mapper.flush()


class _Mapper:
    """Per-file state: caches for times and addresses, and the conn aggregate."""

    def __init__(self, settings: ZeekSettings) -> None:
        self.settings = settings
        self.seconds: dict[str, datetime] = {}
        self.days: dict[int, date] = {}
        self.addresses: dict[str, str] = {}
        self.flows: dict[_FlowKey, _FlowCounts] = {}
        self.handlers: dict[str, Handler] = {
            "conn": self._conn,
            "smtp": self._smtp,
            "socks": self._socks,
            "software": self._software,
            "known_services": self._known_services,
            "known_hosts": self._known_hosts,
            "dns": self._dns,
            "http": self._http,
            "ssl": self._ssl,
        }

    def project(self, block: Block) -> LineHandler[Record] | str:
        """The handler for lines under this header, or why they cannot be read."""
        if block.path not in _FIELDS:
            return f"log type {block.path!r} is not one rolecall reads"
        required, optional = _FIELDS[block.path]
        missing = [name for name in required if name not in block.fields]
        if missing:
            return f"{block.path} log without {', '.join(missing)}"
        # a partial, not a lambda: one Python call per line fewer
        return partial(self.handlers[block.path], block, picker(block, required + optional))

    def time(self, raw: str) -> datetime:
        """A Zeek time (epoch seconds, or ISO 8601 from JSON::TS_ISO8601) as a UTC datetime."""
        seconds, _, fraction = raw.partition(".")
        base = self.seconds.get(seconds)
        if base is None:
            if not seconds.isdigit():
                return _iso_time(raw)
            if len(self.seconds) > _CACHE_CAP:
                self.seconds.clear()
            base = self.seconds[seconds] = _epoch_time(raw, float(seconds))
        if not fraction:
            return base
        if not fraction.isdigit():
            raise ValueError(f"ts {raw!r} is not a time")
        return base.replace(microsecond=int(fraction[:6].ljust(6, "0")))

    def address(self, raw: str, field: str) -> str:
        """An address field, checked and in canonical form (ValueError if it is not one)."""
        known = self.addresses.get(raw)
        if known is None:
            try:
                known = str(ipaddress.ip_address(raw))
            except ValueError:
                raise ValueError(f"{field} {raw!r} is not an IP address") from None
            if len(self.addresses) > _CACHE_CAP:
                self.addresses.clear()
            self.addresses[raw] = known
        return known

    def _conn(self, block: Block, pick: Picker, values: list[str]) -> Sequence[Record]:
        """Add one connection to its flow; returns flows only when the aggregate is flushed."""
        row = pick(values)
        ts, client, server, port, proto, state, opkts, rpkts, oip, rip, _ob, _rb = row
        try:  # the common case: every number present
            moment = float(ts)
            replied = int(rpkts)
            packets = int(opkts) + replied
            size = int(oip) + int(rip)
        except ValueError:
            moment, replied, packets, size = self._conn_numbers(block, row)
        answered = replied > 0 or state in _REPLY_STATES
        known = self.addresses
        key = (
            known.get(client) or self.address(client, "id.orig_h"),
            known.get(server) or self.address(server, "id.resp_h"),
            port,
            proto,
            int(moment // 86400),
        )
        flow = self.flows.get(key)
        if flow is not None:
            # immutable entries of plain values: the collector untracks them, so a
            # big aggregate costs no garbage-collection time
            count, pkts, octets, seen_reply, first, last = flow
            self.flows[key] = (
                count + 1,
                pkts + packets,
                octets + size,
                seen_reply or answered,
                first if first < moment else moment,
                last if last > moment else moment,
            )
            return ()
        if not port.isdigit() or int(port) > 65535 or proto == block.unset_field:
            raise ValueError(f"id.resp_p {port!r} / proto {proto!r} is not a port and transport")
        _epoch_time(ts, moment)  # every time under this key falls on the same, checked, day
        # interned, the port and transport strings of all held flows are shared
        key = (key[0], key[1], sys.intern(port), sys.intern(proto), key[4])
        self.flows[key] = (1, packets, size, answered, moment, moment)
        if len(self.flows) > self.settings.flow_cap:
            return list(self.flush(len(self.flows) // 2))
        return ()

    def _conn_numbers(self, block: Block, row: Row) -> tuple[float, int, int, int]:
        """Time, reply packets, packets and bytes of a conn line with some of them unset."""
        ts, opkts, rpkts, oip, rip, obytes, rbytes = row[0], *row[6:]
        number = block.number
        try:
            moment = float(ts)
        except ValueError:
            moment = self.time(ts).timestamp()
        replied = number(rpkts)
        if oip != block.unset_field:
            size = number(oip) + number(rip)
        else:  # Zeek without the IP-level counters: payload bytes are what is left
            size = number(obytes) + number(rbytes)
        return moment, replied, number(opkts) + replied, size

    def flush(self, oldest: int = 0) -> Iterator[Flow]:
        """Yield and forget the ``oldest`` aggregated flows (all if 0), in first-seen order.

        Evicting the flows begun longest ago keeps the busy ones (a resolver,
        a popular site) aggregating while the held set stays bounded.
        """
        if oldest:
            keys = list(itertools.islice(self.flows, oldest))
            pop = self.flows.pop
            flows = [(key, pop(key)) for key in keys]
        else:
            flows, self.flows = list(self.flows.items()), {}
        stamp = datetime.fromtimestamp
        for (client, server, port, transport, day), counts in flows:
            count, packets, size, answered, first, last = counts
            yield Flow(
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

    def _smtp(self, block: Block, pick: Picker, values: list[str]) -> Sequence[Record]:
        """One smtp.log line: one mail transaction."""
        row = pick(values)
        ts, client, cport, server, sport, depth, helo, mailfrom, rcptto, date_, from_, to = row[:12]
        msg_id, subject, last_reply, user_agent, tls = row[12:]
        text = block.text
        return (
            SmtpTransaction(
                ts=self.time(ts),
                client=self.address(client, "id.orig_h"),
                client_port=int(cport),
                server=self.address(server, "id.resp_h"),
                server_port=int(sport),
                source=SOURCE,
                trans_depth=block.number(depth),
                helo=text(helo),
                mail_from=text(mailfrom),
                rcpt_to=block.items(rcptto),
                subject=text(subject),
                from_=text(from_),
                to=block.items(to),
                date=text(date_),
                msg_id=text(msg_id),
                user_agent=text(user_agent),
                last_reply=text(last_reply),
                tls=tls == "T",
            ),
        )

    def _socks(self, block: Block, pick: Picker, values: list[str]) -> Sequence[Record]:
        """One socks.log line: one SOCKS request."""
        row = pick(values)
        ts, client, cport, proxy, pport, version, user, password, status = row[:9]
        rhost, rname, rport, bhost, bport = row[9:]
        text = block.text
        return (
            SocksRequest(
                ts=self.time(ts),
                client=self.address(client, "id.orig_h"),
                client_port=int(cport),
                proxy=self.address(proxy, "id.resp_h"),
                proxy_port=int(pport),
                source=SOURCE,
                version=block.number(version),
                user=text(user),
                password=text(password) if self.settings.keep_passwords else "",
                status=text(status),
                request_host=self._optional_address(block, rhost, "request.host"),
                request_name=text(rname),
                request_port=block.number(rport),
                bound_host=self._optional_address(block, bhost, "bound.host"),
                bound_port=block.number(bport),
            ),
        )

    def _optional_address(self, block: Block, raw: str, field: str) -> str:
        """An address field that may be unset ("" then)."""
        text = block.text(raw)
        return self.address(text, field) if text else ""

    def _software(self, block: Block, pick: Picker, values: list[str]) -> Sequence[Record]:
        """One software.log line: what software a host runs."""
        ts, host, port, kind, name, major, minor, minor2, minor3, addl, unparsed = pick(values)
        text = block.text
        if text(major):
            parts = [text(major)] + [f".{text(p)}" for p in (minor, minor2, minor3) if text(p)]
            version = "".join(parts) + (f"-{text(addl)}" if text(addl) else "")
        else:
            version = text(unparsed)
        software_type = text(kind)
        # Zeek attributes SMTP::MAIL_CLIENT to the host in the last Received
        # header, which is not always the connection's originator (a relay may
        # add the hop); smtp.log's user_agent is the better evidence for the
        # sending host, so this gets a kind of its own for the lead to weigh lower.
        observed = "mail-client-software" if software_type == "SMTP::MAIL_CLIENT" else "software"
        return (
            Observation(
                address=self.address(host, "host"),
                kind=observed,
                source=SOURCE,
                seen=self.time(ts),
                port=block.number(port),
                value=f"{software_type}:{text(name)} {version}".strip(),
                detail=json.dumps({"unparsed_version": text(unparsed)}),
            ),
        )

    def _known_services(self, block: Block, pick: Picker, values: list[str]) -> Sequence[Record]:
        """One known_services.log line: a service a host offers."""
        ts, host, port, proto, services = pick(values)
        names = sorted({name.lower() for name in block.items(services)})
        return (
            Service(
                address=self.address(host, "host"),
                port=int(port),
                transport=block.text(proto).lower(),
                source=SOURCE,
                seen=self.time(ts),
                protocol=",".join(names),
            ),
        )

    def _known_hosts(self, block: Block, pick: Picker, values: list[str]) -> Sequence[Record]:
        """One known_hosts.log line: a host that is up."""
        ts, host = pick(values)
        return (Observation(self.address(host, "host"), "host-up", SOURCE, self.time(ts)),)

    def _dns(self, block: Block, pick: Picker, values: list[str]) -> Sequence[Record]:
        """One dns.log line: the client's query, MX look-ups, and names for A/AAAA answers."""
        ts, client, server, port, proto, query, qtype, rcode, answers = pick(values)
        seen, text = self.time(ts), block.text
        name = text(query).lower().rstrip(".")
        client = self.address(client, "id.orig_h")
        transport = text(proto).lower()
        detail = {"query": name, "qtype": text(qtype), "rcode": text(rcode)}
        records: list[Record] = [
            Observation(
                client,
                "dns-query",
                SOURCE,
                seen,
                port=int(port),
                transport=transport,
                value=self.address(server, "id.resp_h"),
                detail=json.dumps(detail),
            )
        ]
        if qtype == "MX" and name:
            records.append(
                Observation(client, "dns-mx-query", SOURCE, seen, int(port), transport, name)
            )
        if qtype in ("A", "AAAA") and name:
            for answer in block.items(answers):
                if _is_address(answer):
                    records.append(HostName(self.address(answer, "answers"), name, SOURCE, seen))
        return records

    def _http(self, block: Block, pick: Picker, values: list[str]) -> Sequence[Record]:
        """One http.log line: the Host the server answers for and the client's User-Agent."""
        ts, client, server, port, host, agent = pick(values)
        seen, text = self.time(ts), block.text
        server = self.address(server, "id.resp_h")
        records: list[Record] = []
        name = text(host).lower()
        if name:
            records.append(Observation(server, "http-host", SOURCE, seen, int(port), "tcp", name))
        if text(agent):
            detail = json.dumps({"server": server, "host": name})
            client = self.address(client, "id.orig_h")
            records.append(
                Observation(
                    client, "http-user-agent", SOURCE, seen, int(port), "tcp", text(agent), detail
                )
            )
        return records

    def _ssl(self, block: Block, pick: Picker, values: list[str]) -> Sequence[Record]:
        """One ssl.log line: the server name the client asked the server for."""
        ts, _client, server, port, sni = pick(values)
        name = block.text(sni).lower()
        if not name:
            return ()
        server = self.address(server, "id.resp_h")
        return (Observation(server, "tls-sni", SOURCE, self.time(ts), int(port), "tcp", name),)


def _epoch_time(raw: str, seconds: float) -> datetime:
    """Seconds since the epoch as a UTC datetime (ValueError if out of range)."""
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"ts {raw!r} is out of range") from None


def _iso_time(raw: str) -> datetime:
    """An ISO 8601 time (Zeek's JSON::TS_ISO8601) as a UTC datetime."""
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"ts {raw!r} is not a time") from None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _is_address(text: str) -> bool:
    """Whether a DNS answer is an address (answers also hold CNAME targets)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _names(text: str) -> tuple[str, ...]:
    """Field names from a space-separated list."""
    return tuple(text.split())


_ID = "ts id.orig_h id.orig_p id.resp_h id.resp_p "
# Per log type: the fields a line must have, then the ones that may be absent.
_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "conn": (
        _names("ts id.orig_h id.resp_h id.resp_p proto"),
        _names("conn_state orig_pkts resp_pkts orig_ip_bytes resp_ip_bytes orig_bytes resp_bytes"),
    ),
    "smtp": (
        _names(_ID),
        _names("trans_depth helo mailfrom rcptto date from to msg_id subject last_reply")
        + _names("user_agent tls"),
    ),
    "socks": (
        _names(_ID + "version"),
        _names("user password status request.host request.name request_p bound.host bound_p"),
    ),
    "software": (
        _names("ts host"),
        _names("host_p software_type name version.major version.minor version.minor2")
        + _names("version.minor3 version.addl unparsed_version"),
    ),
    "known_services": (_names("ts host port_num port_proto"), ("service",)),
    "known_hosts": (_names("ts host"), ()),
    "dns": (
        _names("ts id.orig_h id.resp_h id.resp_p"),
        _names("proto query qtype_name rcode_name answers"),
    ),
    "http": (_names("ts id.orig_h id.resp_h id.resp_p"), ("host", "user_agent")),
    "ssl": (_names("ts id.orig_h id.resp_h id.resp_p"), ("server_name",)),
}
