"""Fast handlers for smtp.log, socks.log and dns.log lines that hold no escapes.

Almost every line of a busy log is plain: no ``\\`` anywhere, so each text field
decodes to itself (or to "" when unset or empty), and its times, addresses and
ports repeat. The handlers here decode such a line with cached look-ups and
few calls per field. A line with an escape, and a line any of whose values is
refused, goes to the general handler of ``rolecall.probes.passive.zeek.records``,
which makes the same records and says why it refuses one: the fast path decides
nothing of its own, and tests compare the two on the same lines.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime

from rolecall.probes.field_values import ip_address, port_number
from rolecall.probes.passive.zeek.flows import SOURCE, Address, FlowBatch, Time
from rolecall.probes.passive.zeek.log_format import Block, LineHandler, Picker
from rolecall.probes.records import HostName, Observation, Record, SmtpTransaction, SocksRequest

Mapped = Record | FlowBatch
General = Callable[[Block, Picker, list[str]], Sequence[Mapped]]
"""The general handler of a log type, for the lines the fast one leaves to it."""

_CACHE_CAP = 65536


class PlainLines:
    """Per-file caches the fast handlers share with the general decoder.

    ``seconds`` and ``addresses`` are the general decoder's own caches (whole
    seconds to datetimes, raw addresses to canonical ones), ``time`` and
    ``address`` its checked decoders that fill them.
    """

    def __init__(
        self, seconds: dict[str, datetime], addresses: dict[str, str], time: Time, address: Address
    ) -> None:
        self.seconds = seconds
        self.addresses = addresses
        self.time = time
        self.address = address
        self.ports: dict[str, int] = {}
        self.answers: dict[str, str] = {}  # a DNS answer: its canonical address, "" if a name

    def smtp(self, block: Block, pick: Picker, general: General) -> LineHandler[Mapped]:
        """The handler of smtp.log lines under this header (fields as ``_FIELDS`` orders them)."""
        blank = {block.unset_field: "", block.empty_field: ""}.get
        separator = block.set_separator
        known, ports = self.addresses, self.ports
        stamp, address, port = self.stamp, self.address, self.port

        def line(values: list[str]) -> Sequence[Mapped]:
            """One line: one mail transaction."""
            row = pick(values)
            if "\\" in "".join(row):
                return general(block, pick, values)
            (ts, client, cport, server, sport, depth, helo, mailfrom, rcptto, date_, from_, to) = (
                row[:12]
            )
            msg_id, subject, last_reply, user_agent, tls = row[12:]
            try:
                moment = stamp(ts)
                client = known.get(client) or address(client, "id.orig_h")
                client_port = ports.get(cport)
                if client_port is None:
                    client_port = port(cport)
                server = known.get(server) or address(server, "id.resp_h")
                server_port = ports.get(sport)
                if server_port is None:
                    server_port = port(sport)
                if not (depth.isascii() and depth.isdigit() and len(depth) < 19):
                    raise ValueError(depth)
            except ValueError:
                return general(block, pick, values)
            rcpt = blank(rcptto)
            copied = blank(to)
            transaction = SmtpTransaction(
                moment,
                client,
                client_port,
                server,
                server_port,
                SOURCE,
                int(depth),
                blank(helo, helo),
                blank(mailfrom, mailfrom),
                () if rcpt is not None else tuple(rcptto.split(separator)),
                (),
                blank(subject, subject),
                blank(from_, from_),
                () if copied is not None else tuple(to.split(separator)),
                blank(date_, date_),
                blank(msg_id, msg_id),
                blank(user_agent, user_agent),
                blank(last_reply, last_reply),
                tls == "T",
            )
            return (transaction,)

        return line

    def socks(
        self, block: Block, pick: Picker, general: General, keep_passwords: bool
    ) -> LineHandler[Mapped]:
        """The handler of socks.log lines under this header (fields as ``_FIELDS`` orders them)."""
        blank = {block.unset_field: "", block.empty_field: ""}.get
        known, ports = self.addresses, self.ports
        stamp, address, port = self.stamp, self.address, self.port

        def line(values: list[str]) -> Sequence[Mapped]:
            """One line: one SOCKS request."""
            row = pick(values)
            if "\\" in "".join(row):
                return general(block, pick, values)
            ts, client, cport, proxy, pport, version, user, password, status = row[:9]
            rhost, rname, rport, bhost, bport = row[9:]
            try:
                moment = stamp(ts)
                client = known.get(client) or address(client, "id.orig_h")
                client_port = ports.get(cport)
                if client_port is None:
                    client_port = port(cport)
                proxy = known.get(proxy) or address(proxy, "id.resp_h")
                proxy_port = ports.get(pport)
                if proxy_port is None:
                    proxy_port = port(pport)
                if not (version.isascii() and version.isdigit() and len(version) < 19):
                    raise ValueError(version)
                request_host = blank(rhost)
                if request_host is None:
                    request_host = known.get(rhost) or address(rhost, "request.host")
                request_port = 0 if blank(rport) is not None else ports.get(rport) or port(rport)
                bound_host = blank(bhost)
                if bound_host is None:
                    bound_host = known.get(bhost) or address(bhost, "bound.host")
                bound_port = 0 if blank(bport) is not None else ports.get(bport) or port(bport)
            except ValueError:
                return general(block, pick, values)
            request = SocksRequest(
                moment,
                client,
                client_port,
                proxy,
                proxy_port,
                SOURCE,
                int(version),
                blank(user, user),
                blank(password, password) if keep_passwords else "",
                blank(status, status),
                request_host,
                blank(rname, rname),
                request_port,
                bound_host,
                bound_port,
            )
            return (request,)

        return line

    def dns(self, block: Block, pick: Picker, general: General) -> LineHandler[Mapped]:
        """The handler of dns.log lines under this header (fields as ``_FIELDS`` orders them)."""
        blank = {block.unset_field: "", block.empty_field: ""}.get
        separator = block.set_separator
        known, ports = self.addresses, self.ports
        stamp, address, port = self.stamp, self.address, self.port
        answers_known = self.answers
        # per header: what a raw value means depends on the header's unset and empty markers
        details: dict[tuple[str, str, str], str] = {}

        def line(values: list[str]) -> Sequence[Mapped]:
            """One line: the client's query, an MX look-up, names for A/AAAA answers."""
            row = pick(values)
            if "\\" in "".join(row):
                return general(block, pick, values)
            ts, client, server, raw_port, proto, query, qtype, rcode, answers = row
            try:
                seen = stamp(ts)
                number = ports.get(raw_port)
                if number is None:
                    number = port(raw_port)
                client = known.get(client) or address(client, "id.orig_h")
                server = known.get(server) or address(server, "id.resp_h")
            except ValueError:
                return general(block, pick, values)
            name = blank(query, query).lower().rstrip(".")
            transport = blank(proto, proto).lower()
            detail = details.get((name, qtype, rcode))
            if detail is None:
                if len(details) > _CACHE_CAP:
                    details.clear()
                detail = json.dumps(
                    {"query": name, "qtype": blank(qtype, qtype), "rcode": blank(rcode, rcode)}
                )
                details[(name, qtype, rcode)] = detail
            records: list[Mapped] = [
                Observation(client, "dns-query", SOURCE, seen, number, transport, server, detail)
            ]
            if qtype == "MX" and name:
                records.append(
                    Observation(client, "dns-mx-query", SOURCE, seen, number, transport, name)
                )
            if qtype in ("A", "AAAA") and name and blank(answers) is None:
                for answer in answers.split(separator):
                    canonical = answers_known.get(answer)
                    if canonical is None:
                        canonical = self._answer(answer)
                    if canonical:
                        records.append(HostName(canonical, name, SOURCE, seen))
            return records

        return line

    def stamp(self, ts: str) -> datetime:
        """A time field: from the cached whole second if it is one, else by the general decoder."""
        whole, _, fraction = ts.partition(".")
        base = self.seconds.get(whole)
        if base is not None and len(fraction) == 6 and fraction.isascii() and fraction.isdigit():
            return base.replace(microsecond=int(fraction))
        return self.time(ts)

    def port(self, raw: str) -> int:
        """A port field's number, checked and cached (ValueError if it is not a port)."""
        number = port_number(raw, "port")
        self.ports[raw] = number  # at most the 111,111 ways to write 0..65535 in 5 digits
        return number

    def _answer(self, answer: str) -> str:
        """A DNS answer's canonical address, or "" if it is not one (a CNAME target)."""
        if len(self.answers) > _CACHE_CAP:
            self.answers.clear()
        try:
            canonical = ip_address(answer, "answers")
        except ValueError:
            canonical = ""
        self.answers[answer] = canonical
        return canonical
