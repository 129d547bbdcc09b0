"""The schedule table: schedules kept as plain data, added, replaced, removed and synced."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from rolecall.inventory.errors import StoreError
from rolecall.inventory.schedules import Schedule
from rolecall.inventory.store import Store
from tests.inventory_sql import execute, query

T0 = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
SCAN = Schedule("nightly", "scan", {"subnets": ["127.0.122.0/29"], "ports": None, "probes": None})


def test_add_get_replace_remove_round_trip(database: str) -> None:
    store = Store.open(database)
    table = store.schedules
    assert table.add(replace(SCAN, cron="0 2 * * *", next_run=T0))
    mail = Schedule("mail", "report-email", {"to": ["soc@lab.example"]}, every=60)
    assert table.add(mail)
    assert not table.add(replace(SCAN, cron="0 3 * * *")), "an id is taken once"

    stored = table.get("nightly")
    assert stored is not None
    assert stored.same_job(replace(SCAN, cron="0 2 * * *"))
    assert stored.next_run == T0
    assert stored.created is not None
    assert stored.created.tzinfo is not None
    assert [schedule.id for schedule in table.all()] == ["mail", "nightly"]

    table.replace(replace(SCAN, cron="0 3 * * *"))
    again = table.get("nightly")
    assert again is not None
    assert again.cron == "0 3 * * *"
    assert again.next_run is None

    assert not table.remove("nightly", "config"), "only a schedule of that origin goes"
    assert table.remove("nightly", "cli")
    assert not table.remove("nightly", "cli")
    assert [schedule.id for schedule in table.all()] == ["mail"]
    ((arguments,),) = query(database, "SELECT arguments FROM schedule")
    assert arguments == '{"to": ["soc@lab.example"]}'
    store.close()


def test_syncing_an_origin_keeps_the_next_run_of_unchanged_schedules(database: str) -> None:
    store = Store.open(database)
    table = store.schedules
    table.add(SCAN)
    weekly = Schedule("config:weekly", "report-email", {"to": []}, cron="0 7 * * MON")
    daily = Schedule("config:daily", "report-email", {"to": []}, cron="0 7 * * *")
    table.sync_origin("config", [replace(weekly, next_run=T0), replace(daily, next_run=T0)])
    later = T0 + timedelta(days=7)
    table.sync_origin(
        "config",
        [replace(weekly, next_run=later), replace(daily, cron="0 8 * * *", next_run=later)],
    )
    stored = {schedule.id: schedule for schedule in table.all()}
    assert stored["config:weekly"].next_run == T0, "unchanged: its pending run is kept"
    assert stored["config:daily"].next_run == later, "changed: runs from its new trigger"
    assert stored["config:daily"].cron == "0 8 * * *"
    table.sync_origin("config", [])
    assert [schedule.id for schedule in table.all()] == ["nightly"], "the CLI's are left alone"
    store.close()


def test_a_next_run_is_recorded_only_for_the_schedule_as_it_was_read(database: str) -> None:
    store = Store.open(database)
    table = store.schedules
    table.add(replace(SCAN, cron="0 2 * * *"))
    read = table.get("nightly")
    assert read is not None
    table.set_next_run(read, T0)
    assert (table.get("nightly") or read).next_run == T0
    table.replace(replace(SCAN, cron="0 4 * * *", next_run=T0 + timedelta(hours=2)))
    table.set_next_run(read, T0 + timedelta(days=1))  # the daemon's copy is out of date
    assert (table.get("nightly") or read).next_run == T0 + timedelta(hours=2)
    store.close()


def test_arguments_that_are_not_a_json_object_are_a_store_error(database: str) -> None:
    store = Store.open(database)
    store.schedules.add(SCAN)
    execute(database, "UPDATE schedule SET arguments = '[1, 2'")
    with pytest.raises(StoreError, match="schedule nightly: its arguments are not a JSON object"):
        store.schedules.all()
    store.close()
