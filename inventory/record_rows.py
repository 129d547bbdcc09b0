"""Turning probe records into table rows, and merging rows that share a natural key."""

from __future__ import annotations

import hashlib
import json
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


def smtp_row(txn: SmtpTransaction) -> dict[str, Any]:
    """Row of the smtp table; list fields become JSON arrays."""
    return {
        "ts": txn.ts,
        "client": txn.client,
        "client_port": txn.client_port,
        "server": txn.server,
        "server_port": txn.server_port,
        "trans_depth": txn.trans_depth,
        "helo": txn.helo,
        "mail_from": txn.mail_from,
        "rcpt_to": json_strings(txn.rcpt_to),
        "refused_rcpt": json_strings(txn.refused_rcpt),
        "subject": txn.subject,
        "from": txn.from_,
        "to": json_strings(txn.to),
        "date": txn.date,
        "msg_id": txn.msg_id,
        "user_agent": txn.user_agent,
        "last_reply": txn.last_reply,
        "tls": txn.tls,
        "via_proxy": txn.via_proxy,
        "relayed_for": txn.relayed_for,
        "source": txn.source,
    }


def socks_row(req: SocksRequest) -> dict[str, Any]:
    """Row of the socks table."""
    return {
        "ts": req.ts,
        "client": req.client,
        "client_port": req.client_port,
        "proxy": req.proxy,
        "proxy_port": req.proxy_port,
        "version": req.version,
        "user": req.user,
        "password": req.password,
        "status": req.status,
        "request_host": req.request_host,
        "request_name": req.request_name,
        "request_port": req.request_port,
        "bound_host": req.bound_host,
        "bound_port": req.bound_port,
        "source": req.source,
    }


def connect_row(req: ConnectRequest) -> dict[str, Any]:
    """Row of the connect table."""
    return {
        "ts": req.ts,
        "client": req.client,
        "client_port": req.client_port,
        "proxy": req.proxy,
        "proxy_port": req.proxy_port,
        "user": req.user,
        "password": req.password,
        "status": req.status,
        "request_host": req.request_host,
        "request_port": req.request_port,
        "source": req.source,
    }


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


def keep_first(_stored: dict[str, Any], _new: dict[str, Any]) -> None:
    """Keep the pending row as it is (insert-once tables)."""
