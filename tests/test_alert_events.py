"""Finding changes recorded as alert events by real ingests: what, in which order, filtered."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from rolecall.alerts.techniques import RULE_TECHNIQUES, techniques
from rolecall.inventory.alert_events import FindingState, changed_actions
from rolecall.inventory.rules import all_rules
from tests.alert_helpers import (
    CAPTURES,
    CLIENT,
    DAY,
    cli,
    config,
    events,
    life_cycle,
    mail_log,
)
from tests.inventory_sql import execute


def test_captures_open_findings_as_numbered_events(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    conf = config(tmp_path)
    for capture in CAPTURES:
        cli(capsys, database, conf, "ingest", "pcap", str(capture))
    found = events(database)
    assert [event["sequence"] for event in found] == list(range(1, len(found) + 1))
    assert {event["action"] for event in found} == {"opened"}
    proxy = events(database, "open-socks-proxy")
    assert len(proxy) == 1
    assert proxy[0]["address"] == "60.190.189.214"
    assert proxy[0]["severity"] == "high"
    assert proxy[0]["techniques"] == ["T1090"]
    assert "socks-proxy" in proxy[0]["roles"]
    assert proxy[0]["evidence"] == ["socks:1"]
    # The same capture again changes no finding: no event.
    cli(capsys, database, conf, "ingest", "pcap", str(CAPTURES[0]))
    assert len(events(database)) == len(found)


def test_a_finding_opens_updates_resolves_reopens_and_is_acknowledged(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    conf = config(tmp_path)
    life_cycle(capsys, tmp_path, database, conf)
    cli(capsys, database, conf, "findings", "ack", "direct-external-smtp", CLIENT, "--note", "ok")
    found = events(database, "direct-external-smtp")
    assert [event["action"] for event in found] == [
        "opened",
        "updated",
        "resolved",
        "reopened",
        "acknowledged",
    ]
    sequences = [event["sequence"] for event in found]
    assert sequences == sorted(sequences)
    assert found[1]["evidence"] == ["smtp:1", "smtp:2"]
    assert str(found[3]["last_seen"]).startswith("2026-11-05 09:00")
    assert found[4]["note"] == "ok"
    assert found[0]["techniques"] == ["T1071.003"]
    # Deriving everything again re-judges every finding but changes none: no event.
    before = len(events(database))
    cli(capsys, database, conf, "findings", "derive", "--full")
    cli(capsys, database, conf, "findings", "derive")
    assert len(events(database)) == before


@pytest.mark.parametrize(
    ("change", "actions"),
    [
        ({"last_seen": DAY + timedelta(minutes=59)}, []),
        ({"last_seen": DAY + timedelta(minutes=61)}, ["updated"]),
        ({"evidence": frozenset({"smtp:1", "smtp:9"})}, ["updated"]),
        ({"evidence": frozenset()}, []),
        ({"severity": "high"}, ["updated"]),
        ({"status": "resolved"}, ["resolved"]),
        ({"status": "acknowledged", "note": "known"}, ["acknowledged"]),
    ],
)
def test_what_a_material_change_is(change: dict[str, object], actions: list[str]) -> None:
    before = FindingState("open", "medium", frozenset({"smtp:1"}), DAY, "")
    assert changed_actions(before, replace(before, **change)) == actions  # type: ignore[arg-type]
    assert changed_actions(None, before) == ["opened"]
    assert changed_actions(replace(before, status="resolved"), before) == ["reopened"]


def test_sequence_numbers_are_never_reused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    conf = config(tmp_path)
    logs = tmp_path / "logs"
    cli(capsys, database, conf, "ingest", "zeek", str(mail_log(logs / "1", DAY)))
    last = events(database)[-1]["sequence"]
    execute(database, "DELETE FROM alert_event")
    cli(
        capsys,
        database,
        conf,
        "ingest",
        "zeek",
        str(mail_log(logs / "2", DAY, client="10.20.30.41")),
    )
    assert min(event["sequence"] for event in events(database)) > last


ALERTS = """
[[alerts]]
type = "jsonl"
name = "everything"
path = "{dir}/all.jsonl"
min_severity = "info"

[[alerts]]
type = "jsonl"
name = "high"
path = "{dir}/high.jsonl"
min_severity = "high"

[[alerts]]
type = "jsonl"
name = "mail-rule"
path = "{dir}/rule.jsonl"
rules = ["direct-external-smtp"]
suppress_minutes = 60
"""


def _sent(path: Path) -> list[tuple[str, str]]:
    """(rule, action) of each event a jsonl output wrote."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    documents = [json.loads(line) for line in lines]
    return [(doc["rule"]["name"], doc["event"]["action"]) for doc in documents]


def test_outputs_filter_by_severity_and_rule_and_suppress_repeats(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database: str
) -> None:
    conf = config(tmp_path, ALERTS.format(dir=tmp_path))
    for capture in CAPTURES:
        cli(capsys, database, conf, "ingest", "pcap", str(capture))
    logs = tmp_path / "logs"
    cli(capsys, database, conf, "ingest", "zeek", str(mail_log(logs / "1", DAY)))
    cli(capsys, database, conf, "ingest", "zeek", str(mail_log(logs / "2", DAY.replace(hour=11))))
    cli(capsys, database, conf, "ingest", "zeek", str(mail_log(logs / "3", DAY.replace(hour=13))))
    recorded = [(event["rule"], event["action"]) for event in events(database)]
    assert _sent(tmp_path / "all.jsonl") == recorded
    assert _sent(tmp_path / "high.jsonl") == [("open-socks-proxy", "opened")]
    # Two updates within the hour of the first: the second is a repeat, left out.
    assert recorded.count(("direct-external-smtp", "updated")) == 2
    assert _sent(tmp_path / "rule.jsonl") == [
        ("direct-external-smtp", "opened"),
        ("direct-external-smtp", "updated"),
    ]
    pending = json.loads(cli(capsys, database, conf, "alerts", "pending", "--format", "json").out)
    assert [row["waiting"] for row in pending] == [0, 0, 0]
    assert {row["cursor"] for row in pending} == {len(recorded)}


def test_every_rule_is_mapped_to_its_attack_techniques() -> None:
    assert sorted(RULE_TECHNIQUES) == sorted(rule.name for rule in all_rules())
    assert techniques("open-socks-proxy") == ("T1090",)
    assert techniques("mail-via-proxy") == ("T1090", "T1071.003")
    assert techniques("open-relay") == ("T1071.003",)
