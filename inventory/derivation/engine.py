"""Derivation: stored evidence, run through the role rules and finding rules, once per change.

Each derivation reads only the evidence stored since the previous one (see
``evidence_delta``), merges the roles it supports, re-judges the hosts whose
roles, names or services changed (workstation, groups, state rules), raises
findings, and updates the daily series. A change of settings, or ``full=True``,
derives everything again from all evidence. Deriving twice gives the same result,
and derivations after each of several writes, in any order, give what one full
derivation over all of them gives: a verdict that rests on more than the new rows
(the workstation window, which moves with the newest evidence of any host; a
tunnel's request stored after the mail it carried) is taken again from all of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from typing import Any

from sqlalchemy import Connection, delete, func, select

from rolecall.inventory import history
from rolecall.inventory.address_syntax import is_ip_address
from rolecall.inventory.alert_events import recorded_changes
from rolecall.inventory.derivation import evidence_delta as delta
from rolecall.inventory.derivation.port_speech import GUESSED, PortSpeech, withdraw_guesses
from rolecall.inventory.derivation.role_rules import (
    ANY_VALUE_KINDS,
    VALUE_KINDS,
    roles_from_observation,
    roles_of_kind,
)
from rolecall.inventory.derivation.role_table import (
    RoleAccumulator,
    held_roles,
    judge_workstations,
    merge_roles,
    role_count,
    window_passed,
    with_workstations,
)
from rolecall.inventory.findings import (
    mark_resolved,
    resolve,
    resolve_before,
    resolve_reprobed,
    resolve_stale,
    store_raised,
)
from rolecall.inventory.groups import groups_of, groups_of_addresses, update_groups
from rolecall.inventory.matching.address_set import AddressSet
from rolecall.inventory.rules import all_rules
from rolecall.inventory.rules.base import Collector, RowHandler, Rule, RuleContext
from rolecall.inventory.rules.host_roles import (
    HeldRole,
    first_smtp_client,
    roles_of,
    smtp_senders,
)
from rolecall.inventory.settings import DeriveSettings, settings_json
from rolecall.inventory.tables import ASSET_GROUP_TABLE, ASSET_TABLE, FINDING_TABLE, ROLE_TABLE
from rolecall.probes.records import Observation

MAIL_EPOCH = "mail_epoch"  # derive_state key: when the store first saw any host send SMTP
WINDOW_START = "window_start"  # derive_state key: the workstation window's start last time
FLOW_BATCH = 2000  # flows read per list: their servers' port speech is looked up together
# Passive roles from answered flows, by server port (the capture saw a reply): the
# server's roles (as a probe of the same service gives them) and the client's.
FLOW_SERVER_ROLES: dict[tuple[str, int], tuple[tuple[str, ...], str]] = {
    ("tcp", 80): (("web-server",), "web-client"),
    ("tcp", 8080): (("web-server",), "web-client"),
    ("tcp", 443): (("web-server", "https-server"), "web-client"),
    ("udp", 53): (("dns-server",), "dns-client"),
    ("tcp", 53): (("dns-server",), "dns-client"),
    ("tcp", 22): (("ssh-server",), ""),
    # Reading mail, with or without STARTTLS, or over implicit TLS.
    ("tcp", 143): (("imap-server",), "imap-client"),
    ("tcp", 993): (("imap-server",), "imap-client"),
    ("tcp", 110): (("pop3-server",), "pop3-client"),
    ("tcp", 995): (("pop3-server",), "pop3-client"),
}


@dataclass(frozen=True)
class DeriveSummary:
    """What a derivation did: roles held, open findings, hosts re-judged, full or not."""

    roles: int
    findings: int
    hosts_judged: int
    full: bool


@dataclass
class _Pass:
    """What one derivation gathers from the new evidence."""

    roles: RoleAccumulator
    rows: Collector
    smtp_clients: set[str]
    days: set[date]
    probed: set[str]  # hosts with a service probed again (see resolve_reprobed)
    speech: PortSpeech
    heard: set[tuple[str, int]] = field(default_factory=set)  # guessed ports heard speaking


def _observation_roles(row: Any, found: RoleAccumulator) -> None:
    """Roles one observation row supports."""
    obs = Observation(
        row.address,
        row.kind,
        row.source,
        row.last_seen,
        row.port,
        row.transport,
        row.value,
        row.detail or "",
    )
    for role in roles_from_observation(obs):
        key = (row.address, role, row.source)
        found.add(key, row.first_seen, row.last_seen, f"observation:{row.id}")


def _span_roles(span: Any, found: RoleAccumulator) -> None:
    """Roles of a kind that supports them whatever the value, from an aggregated span."""
    for role in roles_of_kind(span.kind):
        key = (span.address, role, span.source)
        for proof in (span.first_id, span.last_id):
            found.add(key, span.first_seen, span.last_seen, f"observation:{proof}")


def _kind_roles(row: Any, found: RoleAccumulator) -> None:
    """Roles of a kind that supports them whatever the value, from one observation row."""
    proof = f"observation:{row.id}"
    for role in roles_of_kind(row.kind):
        found.add((row.address, role, row.source), row.first_seen, row.last_seen, proof)


def _read(
    connection: Connection, ctx: RuleContext, rules: Iterable[Rule], marks: delta.Marks | None
) -> _Pass:
    """Stream the new evidence through the role rules and the row rules."""
    rules = tuple(rule for rule in rules if rule.active(ctx))
    found = _Pass(RoleAccumulator(), Collector(), set(), set(), set(), PortSpeech(connection))
    by_kind: dict[str, list[RowHandler]] = {}
    for rule in rules:
        for kind in rule.observation_kinds:
            if rule.observation is not None:
                by_kind.setdefault(kind, []).append(rule.observation)
    # Reading everything, the database aggregates the value-free kinds; reading what is
    # new since the marks, one pass over the new rows serves every kind.
    kinds = frozenset(VALUE_KINDS | set(by_kind))
    if marks is None:
        for span in delta.observation_spans(connection, ANY_VALUE_KINDS - set(by_kind)):
            _span_roles(span, found.roles)
    else:
        kinds |= ANY_VALUE_KINDS
    for row in delta.observations(connection, kinds, marks):
        if row.kind == "protocol" and row.source == "probe":
            found.probed.add(row.address)
            if row.transport == "tcp" and row.port in GUESSED:
                found.heard.add((row.address, row.port))
        if row.kind in VALUE_KINDS:
            _observation_roles(row, found.roles)
        elif row.kind in ANY_VALUE_KINDS:
            _kind_roles(row, found.roles)
        for handler in by_kind.get(row.kind, ()):
            handler(ctx, row, found.rows)
    smtp_rules = [rule.smtp for rule in rules if rule.smtp is not None]
    # Once per mail transaction (an smtp.log is mostly that): each column read once.
    add_role, clients, days = found.roles.add, found.smtp_clients, found.days
    for row in delta.smtp_rows(connection, marks):
        client, ts, source = row.client, row.ts, row.source
        proof = f"smtp:{row.id}"
        add_role((client, "smtp-client", source), ts, ts, proof)
        if not row.via_proxy or is_ip_address(row.server):  # a tunnel may name a host
            add_role((row.server, "smtp-server", source), ts, ts, proof)
        clients.add(client)
        days.add(ts.date())
        for handler in smtp_rules:
            handler(ctx, row, found.rows)
    socks_rules = [rule.socks for rule in rules if rule.socks is not None]
    tunnels: set[tuple[str, str]] = set()
    for row in delta.socks_rows(connection, marks):
        tunnels.add((row.client, row.proxy))
        proof = f"socks:{row.id}"
        if row.proxy_port in GUESSED:
            found.heard.add((row.proxy, row.proxy_port))
        found.roles.add((row.client, "socks-client", row.source), row.ts, row.ts, proof)
        found.roles.add((row.proxy, "socks-proxy", row.source), row.ts, row.ts, proof)
        for handler in socks_rules:
            handler(ctx, row, found.rows)
    tunnels |= _read_connects(connection, ctx, rules, marks, found)
    if marks is not None and tunnels:
        # Mail read before its tunnel's request was stored is judged again with it.
        readers = [rule.smtp for rule in rules if rule.smtp and rule.smtp_reads_tunnels]
        for row in delta.tunnelled_smtp_rows(connection, tunnels, marks) if readers else ():
            for handler in readers:
                handler(ctx, row, found.rows)
    _read_flows(connection, ctx, rules, marks, found)
    return found


def _read_connects(
    connection: Connection,
    ctx: RuleContext,
    rules: tuple[Rule, ...],
    marks: delta.Marks | None,
    found: _Pass,
) -> set[tuple[str, str]]:
    """HTTP CONNECT requests: the client a web client, a host that answered as a proxy one.

    Returns the (client, proxy) pairs of the requests read.
    """
    connect_rules = [rule.connect for rule in rules if rule.connect is not None]
    tunnels: set[tuple[str, str]] = set()
    for row in delta.connect_rows(connection, marks):
        tunnels.add((row.client, row.proxy))
        proof = f"connect:{row.id}"
        found.roles.add((row.client, "web-client", row.source), row.ts, row.ts, proof)
        if 200 <= row.status < 300 or row.status == 407:
            found.roles.add((row.proxy, "http-proxy", row.source), row.ts, row.ts, proof)
            if row.proxy_port in GUESSED:
                found.heard.add((row.proxy, row.proxy_port))
        if row.status == 407:
            found.roles.add((row.proxy, "http-proxy-auth", row.source), row.ts, row.ts, proof)
        for handler in connect_rules:
            handler(ctx, row, found.rows)
    return tunnels


def _read_flows(
    connection: Connection,
    ctx: RuleContext,
    rules: tuple[Rule, ...],
    marks: delta.Marks | None,
    found: _Pass,
) -> None:
    """Flows: roles (aggregated per host when reading everything), rules, history days."""
    flow_rules = [rule for rule in rules if rule.flow is not None]
    ports: set[int] | None = set(history.FIREWALL_SMTP_PORTS)
    for rule in flow_rules:
        ports = None if ports is None or rule.flow_ports is None else ports | rule.flow_ports
    if marks is None:
        role_ports = frozenset(port for _, port in FLOW_SERVER_ROLES)
        found.speech.load_all()
        for side in ("server", "client"):
            for span in delta.flow_spans(connection, side, role_ports):
                servers, client = FLOW_SERVER_ROLES.get(
                    (span.transport, span.server_port), ((), "")
                )
                if side == "server" and found.speech.speaks_otherwise(
                    span.address, span.server_port, span.transport
                ):
                    servers = ()
                for role in servers if side == "server" else (client,) if client else ():
                    for proof in (span.first_id, span.last_id):
                        key = (span.address, role, span.source)
                        found.roles.add(key, span.first_seen, span.last_seen, f"flow:{proof}")
    wanted = None if ports is None else frozenset(ports)
    handlers = [(rule.flow, rule.flow_ports) for rule in flow_rules if rule.flow is not None]
    for batch in _batches(delta.flow_rows(connection, marks, wanted), FLOW_BATCH):
        if marks is not None:
            found.speech.learn(row.server for row in batch if row.answered)
        for row in batch:
            if marks is not None:
                _flow_roles(row, found.roles, found.speech)
            if row.transport == "tcp" and row.server_port in history.FIREWALL_SMTP_PORTS:
                found.days.add(row.day)
            for handler, only in handlers:
                if only is None or row.server_port in only:
                    handler(ctx, row, found.rows)


def _batches(rows: Iterator[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of at most ``size`` rows (memory bounded, lookups per list)."""
    while batch := list(islice(rows, size)):
        yield batch


def _flow_roles(row: Any, found: RoleAccumulator, speech: PortSpeech) -> None:
    """Roles an answered flow shows, by its server port (unless the port speaks otherwise)."""
    if not row.answered:
        return
    server_roles, client_role = FLOW_SERVER_ROLES.get((row.transport, row.server_port), ((), ""))
    if speech.speaks_otherwise(row.server, row.server_port, row.transport):
        server_roles = ()
    span = (row.first_seen, row.last_seen, f"flow:{row.id}")
    for server_role in server_roles:
        found.add((row.server, server_role, row.source), *span)
    if client_role:
        found.add((row.client, client_role, row.source), *span)


def _newest(connection: Connection) -> datetime:
    """The newest evidence time in the store: derivation's notion of "now"."""
    table = ASSET_TABLE
    newest: datetime | None = connection.execute(select(func.max(table.c.last_seen))).scalar()
    return newest or datetime.now(UTC)


def _all_addresses(connection: Connection) -> set[str]:
    """Every asset's address."""
    return set(connection.execute(select(ASSET_TABLE.c.address)).scalars())


def _start_full(connection: Connection) -> None:
    """Forget derived roles and groups, and the evidence of findings (statuses stay)."""
    connection.execute(delete(ROLE_TABLE))
    connection.execute(delete(ASSET_GROUP_TABLE))


def _resolve_unraised(
    connection: Connection, raised: set[tuple[str, str]], series_rules: set[str]
) -> None:
    """After a full derivation: open findings no evidence supports any more are resolved.

    Findings of rules over the daily series are left to those rules, which end them
    when their series calms.
    """
    table = FINDING_TABLE
    rows = connection.execute(
        select(table.c.id, table.c.rule, table.c.address).where(table.c.status == "open")
    )
    gone = [
        row.id
        for row in rows
        if (row.rule, row.address) not in raised and row.rule not in series_rules
    ]
    mark_resolved(connection, gone)


def derive(
    connection: Connection,
    settings: DeriveSettings,
    full: bool = False,
    rules: Sequence[Rule] | None = None,
) -> DeriveSummary:
    """Bring roles, groups, findings and the daily series up to date with the stored evidence.

    The finding rules are every registered rule unless ``rules`` names others. Each
    finding's net change is recorded as alert events at the end, in the same transaction.
    """
    with recorded_changes(connection):
        return _derive(connection, settings, full, rules)


def _derive(
    connection: Connection,
    settings: DeriveSettings,
    full: bool,
    rules: Sequence[Rule] | None,
) -> DeriveSummary:
    """The derivation itself (see derive)."""
    marks, fingerprint, _ = delta.stored_state(connection)
    full = full or fingerprint != settings.fingerprint()
    now_marks = delta.current_marks(connection)
    if full:
        _start_full(connection)
    newest = _newest(connection)
    ctx = RuleContext(
        connection,
        settings,
        AddressSet(settings.inside),
        AddressSet(settings.approved_relays),
        AddressSet(settings.blocklist),
        {},
        newest,
    )
    rules = all_rules() if rules is None else tuple(rules)
    found = _read(connection, ctx, rules, None if full else marks)
    window = settings.workstation_window_days
    window_start = newest - timedelta(days=window)
    merged = merge_roles(connection, found.roles, full, window_start)
    gained = merged.gained
    if not full:
        gained |= withdraw_guesses(connection, found.heard, found.speech, FLOW_SERVER_ROLES)
    if full:
        changed = _all_addresses(connection)
        judged_hosts = changed
    else:
        changed = gained | delta.new_addresses(connection, marks)
        # A workstation verdict rests on the host's roles and services within the window:
        # judged again wherever one came back into it, or the window's start moved past it.
        before = delta.state_value(connection, WINDOW_START)
        passed = window_passed(
            connection, datetime.fromisoformat(before) if before else None, window_start
        )
        judged_hosts = changed | merged.renewed | passed
    # Reading everything, every host's roles are at hand: the table need not be read back.
    everything = held_roles(found.roles) if full else None
    # Any other host has the same roles within the window as before, so keeps its
    # workstation role or its lack of one (merge_roles stretched it over its new traffic).
    changed |= judge_workstations(connection, sorted(judged_hosts), newest, window, everything)
    update_groups(connection, sorted(changed), settings.groups, everything=full)
    # Host rules judge mail senders only: a host that sends nothing breaks no mail policy.
    senders = smtp_senders(connection, None if full else changed) & changed
    judged = sorted(senders | found.smtp_clients)
    first_mail = first_smtp_client(connection)
    mail_epoch = first_mail.isoformat() if first_mail else ""
    if not full and mail_epoch != delta.state_value(connection, MAIL_EPOCH):
        # Mail older than any seen before moves the start of the mail history, and with
        # it what "new" means for every sender (new-smtp-client): judge them all again.
        judged = sorted(smtp_senders(connection, None) | found.smtp_clients)
    # Reading everything, every host's groups at once; else the judged hosts' only (the
    # series read the groups of each day's hosts they recompute).
    groups: dict[str, list[str]] | None = {}
    if settings.groups:
        groups = groups_of(connection) if full else None
    ctx = RuleContext(
        connection,
        settings,
        ctx.inside,
        ctx.approved_relays,
        ctx.blocklist,
        groups_of_addresses(connection, judged) if groups is None else groups,
        newest,
    )
    hosts = _judge_hosts(ctx, rules, judged, everything)
    # What resolve_stale would resolve at the end is written resolved at once.
    stale = timedelta(hours=settings.resolve_after_hours)
    store_raised(connection, found.rows.found.values(), replace=full, stale_after=stale)
    store_raised(connection, hosts.found.values(), replace=True, stale_after=stale)
    for rule in rules:
        if rule.hosts is not None:
            resolve(connection, rule.name, [a for a in judged if (rule.name, a) not in hosts.found])
    if full:
        series_rules = {rule.name for rule in rules if rule.series is not None}
        _resolve_unraised(connection, set(found.rows.found) | set(hosts.found), series_rules)
    _update_history(ctx, rules, found.days, groups, stale)
    resolve_stale(connection, stale)
    resolve_reprobed(connection, None if full else found.probed)
    delta.save_state(
        connection,
        now_marks,
        settings.fingerprint(),
        settings_json(settings),
        {MAIL_EPOCH: mail_epoch, WINDOW_START: window_start.isoformat()},
    )
    return DeriveSummary(role_count(connection), _open_findings(connection), len(judged), full)


def _judge_hosts(
    ctx: RuleContext,
    rules: Iterable[Rule],
    judged: Sequence[str],
    everything: Mapping[str, Mapping[str, HeldRole]] | None,
) -> Collector:
    """What the host rules raise on the judged hosts (their roles read once for every rule).

    ``everything``: every host's roles but the workstations, when the derivation read all.
    """
    hosts = Collector()
    handlers = [rule.hosts for rule in rules if rule.hosts is not None]
    held: Mapping[str, Mapping[str, HeldRole]] = {}
    if handlers:
        held = (
            roles_of(ctx.connection, judged)
            if everything is None
            else with_workstations(ctx.connection, everything, judged)
        )
    for handler in handlers:
        handler(ctx, held, hosts)
    return hosts


def _update_history(
    ctx: RuleContext,
    rules: Iterable[Rule],
    found_days: set[date],
    groups: Mapping[str, list[str]] | None,
    stale: timedelta,
) -> None:
    """Recompute the touched days of the series, expire old days, and run the series rules.

    ``groups``: every host's groups, or None for the series to read those they need;
    ``stale``: see store_raised.
    """
    connection, settings = ctx.connection, ctx.settings
    newest = max([*found_days, *history.newest_day(connection)], default=None)
    if newest is None:
        return
    oldest = newest - timedelta(days=settings.history_retention_days)
    days = sorted(day for day in found_days if day >= oldest)
    history.recompute_days(connection, days, groups)
    history.expire(connection, newest, settings.history_retention_days)
    for rule in rules:
        verdict = rule.judge_series(ctx, days)
        store_raised(connection, verdict.raised, replace=False, stale_after=stale)
        for address, day in verdict.calm:
            resolve_before(connection, rule.name, address, day)


def _open_findings(connection: Connection) -> int:
    """How many findings are open."""
    table = FINDING_TABLE
    return int(
        connection.execute(
            select(func.count()).select_from(table).where(table.c.status == "open")
        ).scalar()
        or 0
    )
