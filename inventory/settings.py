"""Derivation settings: groups, policies and rule parameters, as plain frozen dataclasses.

The orchestrator builds these from the config; inventory never reads a config.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from rolecall.inventory.matching.mailer_signatures import DEFAULT_SIGNATURES


@dataclass(frozen=True)
class GroupPolicy:
    """What a group's hosts are expected to be and do; None means "no opinion"."""

    expected_roles: tuple[str, ...] = ()
    forbidden_roles: tuple[str, ...] = ()
    may_send_mail: bool | None = None
    mail_relays: tuple[str, ...] = ()


@dataclass(frozen=True)
class GroupSpec:
    """One asset group: members by network, address, hostname, roles or ports, minus others."""

    name: str
    networks: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    hostnames: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()
    exclude_networks: tuple[str, ...] = ()
    exclude_groups: tuple[str, ...] = ()
    policy: GroupPolicy = field(default_factory=GroupPolicy)


@dataclass(frozen=True)
class SurgeSettings:
    """The smtp-client-surge baseline: median and MAD over trailing days, and the threshold."""

    baseline_days: int = 28
    min_baseline_days: int = 7
    threshold_mads: float = 3.0
    min_increase: int = 3


@dataclass(frozen=True)
class DeriveSettings:
    """Everything derivation needs to know beyond the stored evidence."""

    groups: tuple[GroupSpec, ...] = ()
    inside: tuple[str, ...] = ()
    approved_relays: tuple[str, ...] = ()
    mass_mailers: tuple[str, ...] = DEFAULT_SIGNATURES
    blocklist: tuple[str, ...] = ()
    workstation_window_days: int = 30
    resolve_after_hours: float = 24.0
    new_client_learning_days: float = 7.0
    history_retention_days: int = 400
    surge: SurgeSettings = field(default_factory=SurgeSettings)

    def fingerprint(self) -> str:
        """A digest of these settings: a change means everything is derived again."""
        text = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


def settings_json(settings: DeriveSettings) -> str:
    """The settings as JSON text (kept in the store for derivations run without settings)."""
    return json.dumps(asdict(settings), sort_keys=True)


def _tuples(raw: dict[str, Any]) -> dict[str, Any]:
    """JSON lists back to the tuples the dataclasses hold."""
    return {key: tuple(value) if isinstance(value, list) else value for key, value in raw.items()}


def settings_from_json(text: str) -> DeriveSettings:
    """Settings written by settings_json (defaults for empty text)."""
    if not text:
        return DeriveSettings()
    raw = json.loads(text)
    groups = tuple(
        GroupSpec(**{**_tuples(group), "policy": GroupPolicy(**_tuples(group["policy"]))})
        for group in raw.pop("groups")
    )
    surge = SurgeSettings(**raw.pop("surge"))
    return DeriveSettings(groups=groups, surge=surge, **_tuples(raw))
