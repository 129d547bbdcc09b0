"""Turning probe records into table rows, and merging rows that share a natural key."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from rolecall.probes.records import (
    ConnectRequest,
    Flow,
    HostName,
    Observation,
    Service,
    SmtpTransaction,
    SocksRequest,
)

Values = tuple[Any, ...]
Convert = Callable[[Any], Any]


def value_key(value: str) -> str:
    """Return the short digest that stands for an observation value in the unique index."""
    return hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def json_strings(items: tuple[str, ...]) -> str:
    """The JSON array of strings ``json.dumps(list(items))`` writes, plain ones without the encoder.

    Addresses and recipients are nearly always printable ASCII with nothing to
    escape; those are joined as they are, which costs a tenth of the encoder.
    """
    if not items:
        return "[]"
    text = "".join(items)
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return '["' + '", "'.join(items) + '"]'
    return json.dumps(list(items))


def observation_row(obs: Observation) -> dict[str, Any]:
    """Row of the observation table for one observation."""
    return {
        "address": obs.address,
        "kind": obs.kind,
        "source": obs.source,
        "port": obs.port,
        "transport": obs.transport,
        "value": obs.value,
        "value_key": value_key(obs.value),
        "detail": obs.detail,
        "first_seen": obs.seen,
        "last_seen": obs.seen,
        "count": obs.count,
    }


def hostname_row(name: HostName) -> dict[str, Any]:
    """Row of the hostname table."""
    return {
        "address": name.address,
        "name": name.name,
        "source": name.source,
        "first_seen": name.seen,
        "last_seen": name.seen,
    }


def service_row(service: Service) -> dict[str, Any]:
    """Row of the service table."""
    return {
        "address": service.address,
        "port": service.port,
        "transport": service.transport,
        "protocol": service.protocol,
        "product": service.product,
        "version": service.version,
        "auth": service.auth,
        "banner": service.banner,
        "source": service.source,
        "first_seen": service.seen,
        "last_seen": service.seen,
    }


def smtp_values(stamp: Convert, flag: Convert) -> Callable[[SmtpTransaction], Values]:
    """What makes the smtp row (the table's columns in order, id left out) of a transaction,
    ts by stamp, tls by flag.

    A tuple made in one step costs a third of a dict that is taken apart again later.
    """

    def values(txn: SmtpTransaction) -> Values:
        """The row's values."""
        return (
            stamp(txn.ts),
            txn.client,
            txn.client_port,
            txn.server,
            txn.server_port,
            txn.trans_depth,
            txn.helo,
            txn.mail_from,
            json_strings(txn.rcpt_to),
            json_strings(txn.refused_rcpt) if txn.refused_rcpt else "[]",
            txn.subject,
            txn.from_,
            json_strings(txn.to) if txn.to else "[]",
            txn.date,
            txn.msg_id,
            txn.user_agent,
            txn.last_reply,
            flag(txn.tls),
            txn.via_proxy,
            txn.source,
            txn.relayed_for,
        )

    return values


def socks_values(stamp: Convert) -> Callable[[SocksRequest], Values]:
    """What makes the socks row (the table's columns in order, id left out), ts by stamp."""

    def values(req: SocksRequest) -> Values:
        """The row's values."""
        return (
            stamp(req.ts),
            req.client,
            req.client_port,
            req.proxy,
            req.proxy_port,
            req.version,
            req.user,
            req.password,
            req.status,
            req.request_host,
            req.request_name,
            req.request_port,
            req.bound_host,
            req.bound_port,
            req.source,
        )

    return values


def connect_values(stamp: Convert) -> Callable[[ConnectRequest], Values]:
    """What makes the connect row (the table's columns in order, id left out), ts by stamp."""

    def values(req: ConnectRequest) -> Values:
        """The row's values."""
        return (
            stamp(req.ts),
            req.client,
            req.client_port,
            req.proxy,
            req.proxy_port,
            req.user,
            req.password,
            req.status,
            req.request_host,
            req.request_port,
            req.source,
        )

    return values


def flow_row(flow: Flow) -> dict[str, Any]:
    """Row of the flow table."""
    return {
        "client": flow.client,
        "server": flow.server,
        "server_port": flow.server_port,
        "transport": flow.transport,
        "day": flow.day,
        "source": flow.source,
        "connections": flow.connections,
        "packets": flow.packets,
        "bytes": flow.bytes,
        "first_seen": flow.first_seen,
        "last_seen": flow.last_seen,
        "answered": flow.answered,
    }


def widen_span(stored: dict[str, Any], first: datetime, last: datetime) -> None:
    """Widen a row's first_seen/last_seen in place to cover first..last."""
    stored["first_seen"] = min(stored["first_seen"], first)
    stored["last_seen"] = max(stored["last_seen"], last)


def merge_observation(stored: dict[str, Any], new: dict[str, Any]) -> None:
    """Fold a repeated observation into the pending row, as the upsert would."""
    if new["last_seen"] >= stored["last_seen"]:
        stored["detail"] = new["detail"]
    widen_span(stored, new["first_seen"], new["last_seen"])
    stored["count"] += new["count"]


def merge_service(stored: dict[str, Any], new: dict[str, Any]) -> None:
    """Fold a repeated service into the pending row, as the upsert would."""
    for column in ("protocol", "product", "version", "auth", "banner"):
        if new[column]:
            stored[column] = new[column]
    widen_span(stored, new["first_seen"], new["last_seen"])


def merge_flow(stored: dict[str, Any], new: dict[str, Any]) -> None:
    """Fold a repeated flow into the pending row, as the upsert would."""
    for column in ("connections", "packets", "bytes"):
        stored[column] += new[column]
    stored["answered"] = stored["answered"] or new["answered"]
    widen_span(stored, new["first_seen"], new["last_seen"])


def merge_span(stored: dict[str, Any], new: dict[str, Any]) -> None:
    """Fold a repeated sighting (asset, source, name) into the pending row."""
    widen_span(stored, new["first_seen"], new["last_seen"])
