"""The records every probe and reader yields; the inventory stores them.

Probes never touch the database: they produce these immutable records and the
orchestrator hands them to ``rolecall.inventory.store``. Every record names its
``source`` (one of ``SOURCES``) so evidence can always be traced back.

Observation kinds in use (``Observation.kind``), by producer:

- nmap (scan, nmap-xml): ``host-up``, ``port-open`` (value: nmap's service
  name), ``service`` (value: "name product version").
- active probes (probe): ``protocol`` (socks5, socks4, http-proxy, smtp, http,
  https, tls, dns, ssh, ftp, pop3, imap), ``socks5-auth``, ``socks5-relay`` /
  ``socks4-relay`` ("relayed to canary", "handshake-open, relay unverified",
  "refused"), ``http-proxy-relay`` ("relayed to canary", "200 without relay",
  "refused", "inconclusive" with the reason), ``http-proxy-auth`` (value: the
  Proxy-Authenticate challenge, scheme and realm), ``smtp-extensions``,
  ``smtp-starttls``, ``smtp-auth``, ``smtp-plaintext-auth``, ``smtp-relay``
  (open-relay, relay-refused, auth-required, inconclusive), ``tls-certificate``, ``ftp-anonymous``,
  ``unclassified`` (with the bytes seen).
- Zeek (zeek): ``host-up``, ``software``, ``mail-client-software``,
  ``dns-query``, ``dns-mx-query``, ``http-host``, ``http-user-agent``,
  ``tls-sni``, ``http-connect`` (from http.log, as from captures).
- captures (pcap): ``dns-query`` (value: the name asked), ``http-host``,
  ``http-user-agent``, ``tls-sni``, ``smtp-rcpt-refused`` (detail: server,
  reply, via_proxy), ``proxy-egress`` (address: the proxy, value: the client
  whose CONNECT caused the proxy's own outgoing connection), ``http-connect``
  (address: the proxy, port: its port, value: ``granted`` for a 2xx reply to
  an HTTP CONNECT, ``auth-required`` for 407, ``refused`` otherwise; detail:
  client, request_host, request_port, status, user).
- firewall: ``fw-smtp-deny`` (address: the inside host, port: 25/465/587,
  value: the outside destination).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Final

SOURCES: Final = ("scan", "probe", "nmap-xml", "pcap", "zeek", "firewall")


@dataclass(frozen=True, slots=True)
class Observation:
    """One fact about one address; its natural key is every field but seen, count and detail."""

    address: str
    kind: str
    source: str
    seen: datetime
    port: int = 0
    transport: str = ""
    value: str = ""
    detail: str = ""
    count: int = 1


@dataclass(frozen=True, slots=True)
class HostName:
    """A name an address was seen under (reverse DNS, DNS answers, TLS certificates)."""

    address: str
    name: str
    source: str
    seen: datetime


@dataclass(frozen=True, slots=True)
class Service:
    """A service listening on address/port/transport as one source saw it."""

    address: str
    port: int
    transport: str
    source: str
    seen: datetime
    protocol: str = ""
    product: str = ""
    version: str = ""
    auth: str = ""
    banner: str = ""


@dataclass(frozen=True, slots=True)
class SmtpTransaction:
    """One mail transaction, with the fields of Zeek's smtp.log."""

    ts: datetime
    client: str
    client_port: int
    server: str
    server_port: int
    source: str
    trans_depth: int = 1
    helo: str = ""
    mail_from: str = ""
    rcpt_to: tuple[str, ...] = ()
    refused_rcpt: tuple[str, ...] = ()
    subject: str = ""
    from_: str = ""
    to: tuple[str, ...] = ()
    date: str = ""
    msg_id: str = ""
    user_agent: str = ""
    last_reply: str = ""
    tls: bool = False
    via_proxy: str = ""
    relayed_for: str = ""  # on a proxy's own outgoing copy: the client whose tunnel it carries


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """One HTTP CONNECT request and its reply (status 0: no reply seen)."""

    ts: datetime
    client: str
    client_port: int
    proxy: str
    proxy_port: int
    source: str
    user: str = ""
    password: str = ""
    status: int = 0
    request_host: str = ""  # as the request wrote it: an address or a name
    request_port: int = 0


@dataclass(frozen=True, slots=True)
class SocksRequest:
    """One SOCKS request, with the fields of Zeek's socks.log."""

    ts: datetime
    client: str
    client_port: int
    proxy: str
    proxy_port: int
    source: str
    version: int
    user: str = ""
    password: str = ""
    status: str = ""
    request_host: str = ""
    request_name: str = ""
    request_port: int = 0
    bound_host: str = ""
    bound_port: int = 0


@dataclass(frozen=True, slots=True)
class Flow:
    """Client/server traffic aggregated per server port, transport and UTC day."""

    client: str
    server: str
    server_port: int
    transport: str
    day: date
    source: str
    first_seen: datetime
    last_seen: datetime
    connections: int = 1
    packets: int = 0
    bytes: int = 0
    answered: bool = False


Record = Observation | HostName | Service | SmtpTransaction | SocksRequest | ConnectRequest | Flow


def record_fields(record: Record) -> dict[str, object]:
    """Return a record's fields as a plain dict (no deep copies)."""
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


@dataclass(frozen=True, slots=True)
class ReadWarning:
    """Damaged input a reader skipped: where ("file:line" or "file@offset") and what.

    ``traffic`` marks what the file records faithfully but the observed traffic lacks
    or breaks (segments a sensor missed, a BDAT chunk never finished): worth saying,
    but the file is not damaged (an ingest of it still succeeds).
    """

    where: str
    message: str
    traffic: bool = False


Item = Record | ReadWarning

Reader = Callable[[Path], Iterator[Item]]
"""A reader: one input file in, its records and warnings out, as a stream."""
