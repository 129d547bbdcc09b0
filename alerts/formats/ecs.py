"""An alert event as an Elastic Common Schema document, the shape SIEMs ingest as JSON."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Final

from rolecall.alerts.event import AlertEvent

ECS_SEVERITY: Final = {"high": 73, "medium": 47, "low": 21, "info": 0}
"""ECS's suggested numeric severities (as Elastic's detection rules map their levels)."""

ECS_VERSION: Final = "8.11.0"


def ecs_time(moment: datetime) -> str:
    """The moment in UTC as ECS dates are written: RFC 3339 with milliseconds and a Z."""
    utc = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def event_id(event: AlertEvent) -> str:
    """The event's own id: the finding's stable id and the event's sequence number."""
    return f"{event.finding_id}#{event.sequence}"


def ecs_document(event: AlertEvent) -> dict[str, object]:
    """The event as a nested ECS document; values are plain JSON types, never escaped here."""
    rolecall: dict[str, object] = {
        "finding_id": event.finding_id,
        "severity": event.severity,
        "roles": list(event.roles),
        "groups": list(event.groups),
        "evidence": list(event.evidence),
    }
    if event.note:
        rolecall["note"] = event.note
    document: dict[str, object] = {
        "@timestamp": ecs_time(event.at),
        "ecs": {"version": ECS_VERSION},
        "event": {
            "kind": "alert",
            "category": ["network", "intrusion_detection"],
            "type": ["info"],
            "action": event.action,
            "id": event_id(event),
            "sequence": event.sequence,
            "severity": ECS_SEVERITY.get(event.severity, 0),
            "start": ecs_time(event.first_seen),
            "end": ecs_time(event.last_seen),
            "created": ecs_time(event.at),
            "provider": "rolecall",
        },
        "rule": {"id": event.rule, "name": event.rule},
        "message": event.summary,
        "threat": {
            "framework": "MITRE ATT&CK",
            "technique": {"id": list(event.techniques)},
        },
        "observer": {"vendor": "rolecall", "product": "rolecall", "type": "ids"},
        "rolecall": rolecall,
    }
    rolecall["address"] = event.address
    if _is_ip(event.address):
        # ECS ip fields take addresses only: a finding on a group ("group:dmz", "*") has none.
        document["source"] = {"ip": event.address}
        document["host"] = {"ip": [event.address]}
    return document


def _is_ip(text: str) -> bool:
    """Whether text is an IPv4 or IPv6 address (without a zone)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return "%" not in text
