"""Rules are the extension point: a rule over the daily series runs without touching the engine."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from rolecall.inventory.derivation import engine
from rolecall.inventory.derivation.engine import derive
from rolecall.inventory.findings import FindingView, Raised, list_findings
from rolecall.inventory.history import stored_values
from rolecall.inventory.rules import all_rules
from rolecall.inventory.rules.base import Rule, RuleContext, SeriesVerdict
from rolecall.inventory.settings import DeriveSettings
from rolecall.inventory.store import Store
from rolecall.probes.records import SmtpTransaction

BUSY = "busy-mail-day"
DAY = date(2026, 10, 1)


def _busy_days(ctx: RuleContext, days: Sequence[date]) -> SeriesVerdict:
    """A finding on each recomputed day with three SMTP clients or more; calm after a quiet one."""
    if not days:
        return SeriesVerdict()
    values = stored_values(ctx.connection, "smtp_clients", "", days[0], days[-1])
    raised = []
    for day in days:
        if values.get(day, 0) >= 3:
            when = datetime.combine(day, time(), tzinfo=UTC)
            summary = f"{values[day]} SMTP clients on {day.isoformat()}"
            raised.append(Raised(BUSY, "*", "low", summary, when, when, [f"day:{day}"]))
    calm = [("*", days[-1])] if values.get(days[-1], 0) < 3 else []
    return SeriesVerdict(raised, calm)


BUSY_RULE = Rule(BUSY, "low", series=_busy_days)


def _mail(day: date, clients: int) -> list[SmtpTransaction]:
    """One message from each of `clients` hosts on `day`."""
    ts = datetime.combine(day, time(9), tzinfo=UTC)
    return [
        SmtpTransaction(
            ts + timedelta(minutes=n), f"10.1.0.{n + 1}", 40000, "10.9.0.25", 25, "zeek"
        )
        for n in range(clients)
    ]


def _derive(store: Store, rules: Sequence[Rule], full: bool = False) -> list[FindingView]:
    """Derive with these rules; the busy-mail-day findings afterwards."""
    with store.transaction("derive with a test rule") as connection:
        derive(connection, DeriveSettings(), full, rules)
        return list_findings(connection, rule=BUSY)


def test_an_added_series_rule_raises_and_resolves_through_the_engine(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "inventory.db"))
    with_busy = (*all_rules(), BUSY_RULE)
    with store.writer() as writer:
        writer.add_all(_mail(DAY, 4))
    assert _derive(store, all_rules()) == []

    busy = _derive(store, with_busy, full=True)
    assert [(f.address, f.status, f.summary) for f in busy] == [
        ("*", "open", "4 SMTP clients on 2026-10-01")
    ]

    with store.writer() as writer:
        writer.add_all(_mail(DAY + timedelta(days=1), 1))
    assert [(f.address, f.status) for f in _derive(store, with_busy)] == [("*", "resolved")]
    store.close()


def test_the_engine_names_no_rule() -> None:
    tree = ast.parse(inspect.getsource(engine))
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and ".rules" in node.module
    }
    # The registry, what a rule is, and host facts rules and derivation share.
    assert imported == {
        "rolecall.inventory.rules",
        "rolecall.inventory.rules.base",
        "rolecall.inventory.rules.host_roles",
    }
    assert "surge" not in inspect.getsource(engine).lower()
