"""Zeek logs mapped to rolecall records (source "zeek"): the same records the pcap reader makes.

- smtp.log → SmtpTransaction; socks.log → SocksRequest and http.log lines of
  method CONNECT → ConnectRequest (the password only when
  ``ZeekSettings.keep_passwords``; a CONNECT's target is read from ``uri``,
  else ``host``); conn.log → Flow, one per (client, server,
  port, transport, UTC day), added up in memory (``rolecall.probes.passive.zeek.flows``; at most
  ``flow_cap`` held);
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
- ``http-connect`` (http.log, method CONNECT with a reply): address = the
  proxy, port = its port, value = ``granted`` (2xx), ``auth-required`` (407) or
  ``refused``, detail = {"client", "request_host", "request_port", "status", "user"}.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from rolecall.probes.errors import InputError
from rolecall.probes.field_values import ip_address, port_number, quoted
from rolecall.probes.passive.connect_target import connect_outcome, connect_target
from rolecall.probes.passive.worker import items_in_worker
from rolecall.probes.passive.zeek.flows import (
    SOURCE,
    FlowAggregate,
    FlowBatch,
    FlowMaker,
    RawFlow,
    epoch_time,
)
from rolecall.probes.passive.zeek.log_format import (
    DEFAULT_MAX_LINE,
    Block,
    LineHandler,
    Picker,
    log_type_of,
    open_text,
    picker,
    read_log,
)
from rolecall.probes.passive.zeek.plain_lines import General, Mapped, PlainLines
from rolecall.probes.records import (
    ConnectRequest,
    HostName,
    Item,
    Observation,
    Record,
    Service,
    SmtpTransaction,
    SocksRequest,
)

_CACHE_CAP = 65536
_HEAD = 1 << 14  # characters read to see what a log holds


@dataclass(frozen=True, slots=True)
class ZeekSettings:
    """How Zeek logs are read."""

    keep_passwords: bool = False
    flow_cap: int = 360_000  # about 95 MiB of held flows (measured: 275 bytes each)
    max_line: int = DEFAULT_MAX_LINE
    # conn logs this large (bytes on disk) are parsed in a second process; None: never
    worker_min_bytes: int | None = 32 << 20


def read_zeek(path: Path, settings: ZeekSettings) -> Iterator[Item]:
    """Yield the records (and warnings for damaged lines) of one Zeek log, TSV or JSON.

    A large conn log is parsed in a second process (see ``rolecall.probes.passive.worker``);
    what comes out is the same, in the same order.
    """
    make_flow = FlowMaker()
    items: Iterator[Item | RawFlow]
    if _wants_worker(path, settings):
        items = items_in_worker(partial(_raw_items, path, settings), str(path))
    else:
        items = _raw_items(path, settings)
    for item in items:
        yield make_flow(item) if isinstance(item, tuple) else item


def _raw_items(path: Path, settings: ZeekSettings) -> Iterator[Item | RawFlow]:
    """Yield the log's records and warnings, its flows as raw tuples (cheap to send on)."""
    mapper = _Mapper(settings)
    for item in read_log(path, mapper.project, settings.max_line):
        if isinstance(item, FlowBatch):
            yield from item.rows
        else:
            yield item
    yield from mapper.conns.flush().rows


def _wants_worker(path: Path, settings: ZeekSettings) -> bool:
    """Whether a log is a conn log large enough to be worth a second process."""
    threshold = settings.worker_min_bytes
    try:
        if threshold is None or path.stat().st_size < threshold:
            return False
    except OSError:
        return False  # the reader says why it cannot be read
    if log_type_of(path) == "conn":
        return True
    try:
        with open_text(path) as stream:
            head = stream.read(_HEAD)
    except (InputError, OSError, EOFError, zlib.error):
        return False  # the reader says why it cannot be read
    return "#path\tconn\n" in head or '"_path":"conn"' in head


class _Mapper:
    """Per-file state: caches for times and addresses, and the conn aggregate."""

    def __init__(self, settings: ZeekSettings) -> None:
        self.settings = settings
        self.seconds: dict[str, datetime] = {}
        self.addresses: dict[str, str] = {}
        self.conns = FlowAggregate(settings.flow_cap, self.addresses, self.address, self.time)
        self.handlers: dict[str, General] = {
            "conn": self.conns.add,
            "smtp": self._smtp,
            "socks": self._socks,
            "software": self._software,
            "known_services": self._known_services,
            "known_hosts": self._known_hosts,
            "dns": self._dns,
            "http": self._http,
            "ssl": self._ssl,
        }
        plain = PlainLines(self.seconds, self.addresses, self.time, self.address)
        # the logs that are large and mostly plain: their plain lines take a fast path
        self.fast: dict[str, Callable[[Block, Picker, General], LineHandler[Mapped]]] = {
            "smtp": plain.smtp,
            "socks": partial(plain.socks, keep_passwords=settings.keep_passwords),
            "dns": plain.dns,
        }

    def project(self, block: Block) -> LineHandler[Mapped] | str:
        """The handler for lines under this header, or why they cannot be read."""
        if block.path not in _FIELDS:
            return f"log type {quoted(block.path)} is not one rolecall reads"
        required, optional = _FIELDS[block.path]
        missing = [name for name in required if name not in block.fields]
        if missing:
            return f"{block.path} log without {', '.join(missing)}"
        pick = picker(block, required + optional)
        fast = self.fast.get(block.path)
        if fast is not None:
            return fast(block, pick, self.handlers[block.path])
        # a partial, not a lambda: one Python call per line fewer
        return partial(self.handlers[block.path], block, pick)

    def time(self, raw: str) -> datetime:
        """A Zeek time (epoch seconds, or ISO 8601 from JSON::TS_ISO8601) as a UTC datetime."""
        seconds, _, fraction = raw.partition(".")
        base = self.seconds.get(seconds)
        if base is None:
            if not (seconds.isascii() and seconds.isdigit()):
                return _iso_time(raw)
            if len(self.seconds) > _CACHE_CAP:
                self.seconds.clear()
            base = self.seconds[seconds] = epoch_time(raw, float(seconds))
        if not fraction:
            return base
        if not (fraction.isascii() and fraction.isdigit()):
            raise ValueError(f"ts {quoted(raw)} is not a time")
        return base.replace(microsecond=int(fraction[:6].ljust(6, "0")))

    def address(self, raw: str, field: str) -> str:
        """An address field, checked and in canonical form (ValueError if it is not one)."""
        known = self.addresses.get(raw)
        if known is None:
            known = ip_address(raw, field)
            if len(self.addresses) > _CACHE_CAP:
                self.addresses.clear()
            self.addresses[raw] = known
        return known

    def _smtp(self, block: Block, pick: Picker, values: list[str]) -> Sequence[Mapped]:
        """One smtp.log line: one mail transaction."""
        row = pick(values)
        ts, client, cport, server, sport, depth, helo, mailfrom, rcptto, date_, from_, to = row[:12]
        msg_id, subject, last_reply, user_agent, tls = row[12:]
        text = block.text
        return (
            SmtpTransaction(
                ts=self.time(ts),
                client=self.address(client, "id.orig_h"),
                client_port=port_number(cport, "id.orig_p"),
                server=self.address(server, "id.resp_h"),
                server_port=port_number(sport, "id.resp_p"),
                source=SOURCE,
                trans_depth=block.number(depth, "trans_depth"),
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

    def _socks(self, block: Block, pick: Picker, values: list[str]) -> Sequence[Mapped]:
        """One socks.log line: one SOCKS request."""
        row = pick(values)
        ts, client, cport, proxy, pport, version, user, password, status = row[:9]
        rhost, rname, rport, bhost, bport = row[9:]
        text = block.text
        return (
            SocksRequest(
                ts=self.time(ts),
                client=self.address(client, "id.orig_h"),
                client_port=port_number(cport, "id.orig_p"),
                proxy=self.address(proxy, "id.resp_h"),
                proxy_port=port_number(pport, "id.resp_p"),
                source=SOURCE,
                version=block.number(version, "version"),
                user=text(user),
                password=text(password) if self.settings.keep_passwords else "",
                status=text(status),
                request_host=self._optional_address(block, rhost, "request.host"),
                request_name=text(rname),
                request_port=block.port(rport, "request_p"),
                bound_host=self._optional_address(block, bhost, "bound.host"),
                bound_port=block.port(bport, "bound_p"),
            ),
        )

    def _optional_address(self, block: Block, raw: str, field: str) -> str:
        """An address field that may be unset ("" then)."""
        text = block.text(raw)
        return self.address(text, field) if text else ""

    def _software(self, block: Block, pick: Picker, values: list[str]) -> Sequence[Mapped]:
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
                port=block.port(port, "host_p"),
                value=f"{software_type}:{text(name)} {version}".strip(),
                detail=json.dumps({"unparsed_version": text(unparsed)}),
            ),
        )

    def _known_services(self, block: Block, pick: Picker, values: list[str]) -> Sequence[Mapped]:
        """One known_services.log line: a service a host offers."""
        ts, host, port, proto, services = pick(values)
        names = sorted({name.lower() for name in block.items(services)})
        return (
            Service(
                address=self.address(host, "host"),
                port=port_number(port, "port_num"),
                transport=block.text(proto).lower(),
                source=SOURCE,
                seen=self.time(ts),
                protocol=",".join(names),
            ),
        )

    def _known_hosts(self, block: Block, pick: Picker, values: list[str]) -> Sequence[Mapped]:
        """One known_hosts.log line: a host that is up."""
        ts, host = pick(values)
        return (Observation(self.address(host, "host"), "host-up", SOURCE, self.time(ts)),)

    def _dns(self, block: Block, pick: Picker, values: list[str]) -> Sequence[Mapped]:
        """One dns.log line: the client's query, MX look-ups, and names for A/AAAA answers."""
        ts, client, server, port, proto, query, qtype, rcode, answers = pick(values)
        seen, text, number = self.time(ts), block.text, port_number(port, "id.resp_p")
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
                port=number,
                transport=transport,
                value=self.address(server, "id.resp_h"),
                detail=json.dumps(detail),
            )
        ]
        if qtype == "MX" and name:
            records.append(
                Observation(client, "dns-mx-query", SOURCE, seen, number, transport, name)
            )
        if qtype in ("A", "AAAA") and name:
            for answer in block.items(answers):
                if _is_address(answer):
                    records.append(HostName(self.address(answer, "answers"), name, SOURCE, seen))
        return records

    def _http(self, block: Block, pick: Picker, values: list[str]) -> Sequence[Mapped]:
        """One http.log line: the Host the server answers for, the client's User-Agent, CONNECT."""
        ts, client, server, port, host, agent, method, uri, status, user, password, cport = pick(
            values
        )
        seen, text, number = self.time(ts), block.text, port_number(port, "id.resp_p")
        server = self.address(server, "id.resp_h")
        records: list[Record] = []
        if text(method) == "CONNECT":
            request_host, request_port = connect_target(text(uri).split(" ", 1)[0])
            if not request_port:
                request_host, request_port = connect_target(text(host))
            request = ConnectRequest(
                ts=seen,
                client=self.address(client, "id.orig_h"),
                client_port=block.port(cport, "id.orig_p"),
                proxy=server,
                proxy_port=number,
                source=SOURCE,
                user=text(user),
                password=text(password) if self.settings.keep_passwords else "",
                status=block.number(status, "status_code"),
                request_host=request_host,
                request_port=request_port,
            )
            records.append(request)
            if request.status:
                records.append(self._connect_observation(request))
        name = text(host).lower()
        if name and not records:  # a CONNECT's Host names its target, not this server
            records.append(Observation(server, "http-host", SOURCE, seen, number, "tcp", name))
        if text(agent):
            detail = json.dumps({"server": server, "host": name})
            client = self.address(client, "id.orig_h")
            records.append(
                Observation(
                    client, "http-user-agent", SOURCE, seen, number, "tcp", text(agent), detail
                )
            )
        return records

    @staticmethod
    def _connect_observation(request: ConnectRequest) -> Observation:
        """The proxy's http-connect observation for one answered CONNECT."""
        detail = {
            "client": request.client,
            "request_host": request.request_host,
            "request_port": request.request_port,
            "status": request.status,
            "user": request.user,
        }
        return Observation(
            request.proxy,
            "http-connect",
            SOURCE,
            request.ts,
            request.proxy_port,
            "tcp",
            connect_outcome(request.status),
            json.dumps(detail, sort_keys=True),
        )

    def _ssl(self, block: Block, pick: Picker, values: list[str]) -> Sequence[Mapped]:
        """One ssl.log line: the server name the client asked the server for."""
        ts, _client, server, port, sni = pick(values)
        name = block.text(sni).lower()
        if not name:
            return ()
        server, number = self.address(server, "id.resp_h"), port_number(port, "id.resp_p")
        return (Observation(server, "tls-sni", SOURCE, self.time(ts), number, "tcp", name),)


def _iso_time(raw: str) -> datetime:
    """An ISO 8601 time (Zeek's JSON::TS_ISO8601) as a UTC datetime."""
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"ts {quoted(raw)} is not a time") from None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _is_address(text: str) -> bool:
    """Whether a DNS answer is an address (answers also hold CNAME targets)."""
    try:
        ip_address(text, "answer")
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
    "http": (
        _names("ts id.orig_h id.resp_h id.resp_p"),
        _names("host user_agent method uri status_code username password id.orig_p"),
    ),
    "ssl": (_names("ts id.orig_h id.resp_h id.resp_p"), ("server_name",)),
}
