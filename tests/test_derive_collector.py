"""A derivation runs with the cyclic garbage collector paused and leaves it as it found it."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from rolecall.collector import collector_paused
from rolecall.inventory.derivation.engine import derive
from rolecall.inventory.store import Store
from rolecall.probes.records import SmtpTransaction

SEEN = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


@pytest.fixture
def store(database: str) -> Iterator[Store]:
    """An inventory holding one mail transaction, so that a derivation has roles to find."""
    opened = Store.open(database)
    with opened.writer() as writer:
        writer.add(SmtpTransaction(SEEN, "10.9.0.5", 40001, "198.51.100.25", 25, "zeek"))
    yield opened
    opened.close()


@pytest.fixture
def collector() -> Iterator[None]:
    """The collector on again after the test, whatever the test left it as."""
    yield
    gc.enable()


@pytest.mark.usefixtures("collector")
@pytest.mark.parametrize("on", [True, False], ids=["on", "off"])
def test_a_derivation_leaves_the_collector_as_it_found_it(store: Store, on: bool) -> None:
    if on:
        gc.enable()
    else:
        gc.disable()
    summary = store.derive()
    assert summary.roles > 0
    assert gc.isenabled() is on


@pytest.mark.usefixtures("collector")
def test_the_roles_are_derived_with_the_collector_paused(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[bool] = []

    def watched(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.isenabled())
        return derive(*args, **kwargs)

    # The store's own name for the engine's derive: the real one runs, watched.
    monkeypatch.setattr("rolecall.inventory.store.derive", watched)
    gc.enable()
    assert store.derive().roles > 0
    assert seen == [False]
    assert gc.isenabled()


def _fail_while_paused(seen: list[bool]) -> None:
    """Note whether the collector is on inside a pause, then raise."""
    with collector_paused():
        seen.append(gc.isenabled())
        raise LookupError


@pytest.mark.usefixtures("collector")
def test_a_pause_that_fails_turns_the_collector_back_on() -> None:
    gc.enable()
    seen: list[bool] = []
    with pytest.raises(LookupError):
        _fail_while_paused(seen)
    assert seen == [False]
    assert gc.isenabled()


@pytest.mark.usefixtures("collector")
def test_only_the_outer_of_nested_pauses_turns_the_collector_back_on() -> None:
    gc.enable()
    with collector_paused():
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
