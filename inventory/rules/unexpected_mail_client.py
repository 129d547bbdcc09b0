"""unexpected-mail-client: a host sends SMTP though its roles or its group say it should not."""

from __future__ import annotations

from collections.abc import Mapping

from rolecall.inventory.derivation.role_rules import MAIL_SERVER_ROLES, NON_MAIL_SERVER_ROLES
from rolecall.inventory.findings import Raised
from rolecall.inventory.rules.base import Collector, Rule, RuleContext
from rolecall.inventory.rules.host_roles import (
    HeldRole,
    mail_servers_of,
    relayed_clients,
    relaying_note,
)
from rolecall.inventory.settings import GroupSpec

NAME = "unexpected-mail-client"
SEVERITY = "high"


def _policies(ctx: RuleContext, address: str) -> list[GroupSpec]:
    """The configured groups this host belongs to."""
    names = set(ctx.groups.get(address, ()))
    return [spec for spec in ctx.settings.groups if spec.name in names]


def _default_reason(roles: Mapping[str, HeldRole]) -> str | None:
    """Why the default policy objects: a non-mail server role (mail servers may relay)."""
    if MAIL_SERVER_ROLES & roles.keys():
        return None
    servers = sorted(NON_MAIL_SERVER_ROLES & roles.keys())
    if not servers:
        return None
    return f"it is a {', '.join(servers)} and not a mail server"


def _group_reason(
    address: str, groups: list[GroupSpec], servers: dict[str, set[str]]
) -> str | None:
    """Why a group policy objects: mail forbidden, or sent past the group's relays."""
    for spec in groups:
        policy = spec.policy
        if policy.may_send_mail is False or "smtp-client" in policy.forbidden_roles:
            return f"group {spec.name}'s policy forbids sending mail"
        if policy.mail_relays:
            others = sorted(servers.get(address, set()) - set(policy.mail_relays))
            if others:
                return (
                    f"group {spec.name} may only send through {', '.join(policy.mail_relays)}"
                    f" but it sent to {', '.join(others[:3])}"
                )
    return None


def _reason(
    ctx: RuleContext, address: str, roles: Mapping[str, HeldRole], servers: dict[str, set[str]]
) -> str | None:
    """The policy a mail-sending host breaks, if any (a group's word beats the default)."""
    groups = _policies(ctx, address)
    reason = _group_reason(address, groups, servers)
    if reason is not None:
        return reason
    if any(spec.policy.may_send_mail for spec in groups):
        return None
    return _default_reason(roles)


def judge(ctx: RuleContext, held: Mapping[str, Mapping[str, HeldRole]], out: Collector) -> None:
    """Raise on every given host that sends SMTP against its roles or group policy."""
    limited = [a for a in held if any(s.policy.mail_relays for s in _policies(ctx, a))]
    servers = mail_servers_of(ctx.connection, limited)
    breaking: dict[str, tuple[HeldRole, str]] = {}
    for address, roles in held.items():
        client = roles.get("smtp-client")
        reason = None if client is None else _reason(ctx, address, roles, servers)
        if client is not None and reason is not None:
            breaking[address] = (client, reason)
    # A proxy is an SMTP client on the wire; its finding says whose mail it carried.
    relaying = relayed_clients(ctx.connection, sorted(breaking))
    for address, (client, reason) in breaking.items():
        out.raise_(
            Raised(
                NAME,
                address,
                SEVERITY,
                f"{address} sends SMTP{relaying_note(relaying.get(address, []))}, but {reason}.",
                client.first_seen,
                client.last_seen,
                list(client.evidence),
            )
        )


RULE = Rule(NAME, SEVERITY, hosts=judge)
