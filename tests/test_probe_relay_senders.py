"""The relay test's sender and recipient variants against real Exim and aiosmtpd servers.

A relay that trusts its own domain's senders, or the null sender, or reads the
percent hack, is open; one that takes only its own domains is not. The test
stops at RCPT, resets between attempts, stops at the first accepted
combination, and is bounded in time. No server may ever see DATA.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from rolecall.probes.active.driver import run_probes
from rolecall.probes.active.relay_attempts import own_domains
from tests.mta_helpers import LOCAL_ONLY, TRUSTS_OWN_SENDERS, exim
from tests.probe_helpers import (
    FAST,
    LoopbackGate,
    RelayPolicy,
    detail_of,
    mail_server,
    observed,
    roles_of,
)

VERIFIES_RECIPIENTS = """\
  accept domains = +local_domains
         verify = recipient
  deny message = relay not permitted
"""
"""RCPT policy of an MTA that takes only its own, existing users (it has none: no routers)."""


def variants(records: list[Any], port: int) -> list[str]:
    """Return the variants the relay test tried on a port, in order."""
    return [a["variant"] for a in detail_of(records, port, "smtp-relay")["attempts"]]


def test_exim_trusting_its_own_domains_senders_is_an_open_relay(tmp_path: Path) -> None:
    """Foreign and null senders refused, the forged corp.test sender relayed: open, with proof."""
    with exim(tmp_path, "127.0.172.1", [25], rcpt_policy=TRUSTS_OWN_SENDERS) as server:
        records = run_probes([("127.0.172.1", 25)], LoopbackGate(), FAST)
        seen = server.seen()
    assert observed(records, 25, "smtp-relay") == ["open-relay"]
    relay = detail_of(records, 25, "smtp-relay")
    assert relay["accepted"] == {
        "variant": "own-domain-sender",
        "sender": "rolecall-probe@corp.test",
        "recipient": "rolecall-probe@example.net",
    }
    assert variants(records, 25) == ["foreign-sender", "null-sender", "own-domain-sender"]
    assert [(a["mail"], a["rcpt"]) for a in relay["attempts"]] == [(250, 550)] * 2 + [(250, 250)]
    commands = [step["command"] for step in relay["steps"]]
    assert commands[-8:] == [
        "RSET",
        "MAIL FROM:<>",
        "RCPT TO:<rolecall-probe@example.net>",
        "RSET",
        "MAIL FROM:<rolecall-probe@corp.test>",
        "RCPT TO:<rolecall-probe@example.net>",
        "RSET",
        "QUIT",
    ]
    assert seen == [
        "MAIL <rolecall-probe@example.com>",
        "RCPT <rolecall-probe@example.net>",
        "MAIL <>",
        "RCPT <rolecall-probe@example.net>",
        "MAIL <rolecall-probe@corp.test>",
        "RCPT <rolecall-probe@example.net>",
    ]
    assert "smtp-open-relay" in roles_of(records, 25)


def test_exim_taking_only_its_own_domain_is_not_open(tmp_path: Path) -> None:
    """Any local part of corp.test taken, nothing foreign: refused; local-part forms skipped."""
    with exim(tmp_path, "127.0.172.2", [25], rcpt_policy=LOCAL_ONLY) as server:
        records = run_probes([("127.0.172.2", 25)], LoopbackGate(), FAST)
        seen = server.seen()
    assert observed(records, 25, "smtp-relay") == ["relay-refused"]
    relay = detail_of(records, 25, "smtp-relay")
    assert "accepted" not in relay
    assert variants(records, 25) == [
        "foreign-sender",
        "null-sender",
        "own-domain-sender",
        "own-domain-sender",
        "address-literal-sender",
        "source-route",
        "control-unknown-local-user",
    ]
    control = relay["attempts"][-1]
    assert control["recipient"] == "rolecall-probe-no-such-user@corp.test"
    assert control["rcpt"] == 250
    assert relay["note"].startswith("local-part forms not tried")
    assert "smtp-open-relay" not in roles_of(records, 25)
    assert not any(line.startswith("DATA") or "%" in line or "!" in line for line in seen)
    assert relay["steps"][-1]["command"] == "QUIT"


def test_exim_verifying_recipients_is_tried_with_the_local_part_forms(tmp_path: Path) -> None:
    """The control user refused, so percent hack, bang path and quoted forms are tried: refused."""
    with exim(tmp_path, "127.0.172.3", [2525], rcpt_policy=VERIFIES_RECIPIENTS) as server:
        records = run_probes([("127.0.172.3", 2525)], LoopbackGate(), FAST)
        seen = server.seen()
    assert observed(records, 2525, "smtp-relay") == ["relay-refused"]
    assert variants(records, 2525)[-4:] == [
        "control-unknown-local-user",
        "percent-hack",
        "bang-path",
        "quoted-local-part",
    ]
    recipients = [line for line in seen if line.startswith("RCPT")]
    assert "RCPT <rolecall-probe%example.net@corp.test>" in recipients
    assert "RCPT <example.net!rolecall-probe@corp.test>" in recipients
    assert "DATA" not in seen


class PercentHackRelay(RelayPolicy):
    """A relay that reads user%foreign@here as mail for user@foreign, and refuses all else."""

    async def handle_RCPT(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        """Accept only a percent-hack recipient."""
        if "%" not in address:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"


class NullSenderRelay(RelayPolicy):
    """A relay that lets bounces (MAIL FROM:<>) go anywhere."""

    async def handle_RCPT(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        """Accept any recipient of the null sender only."""
        if envelope.mail_from != "<>":  # aiosmtpd keeps the null sender as written
            return "550 5.7.1 Relaying denied"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def test_percent_hack_relay_is_open_with_the_form_as_evidence() -> None:
    """user%example.net@own accepted while an unknown own user is refused: open relay."""
    kwargs = {"server_hostname": "mx.corp.test"}
    with mail_server("127.0.172.4", 25, PercentHackRelay(), **kwargs) as server:
        records = run_probes([("127.0.172.4", 25)], LoopbackGate(), FAST)
    assert observed(records, 25, "smtp-relay") == ["open-relay"]
    accepted = detail_of(records, 25, "smtp-relay")["accepted"]
    assert accepted["variant"] == "percent-hack"
    assert accepted["recipient"] == "rolecall-probe%example.net@corp.test"
    assert server.log.commands[-2:] == ["RSET", "QUIT"]
    assert "DATA" not in server.log.commands


def test_null_sender_relay_is_open() -> None:
    """Foreign recipients only for MAIL FROM:<>: open, the null sender named as the proof."""
    with mail_server("127.0.172.5", 2525, NullSenderRelay()) as server:
        records = run_probes([("127.0.172.5", 2525)], LoopbackGate(), FAST)
    assert observed(records, 2525, "smtp-relay") == ["open-relay"]
    accepted = detail_of(records, 2525, "smtp-relay")["accepted"]
    assert accepted == {
        "variant": "null-sender",
        "sender": "",
        "recipient": "rolecall-probe@example.net",
    }
    assert server.log.commands == ["EHLO", "MAIL", "RCPT", "RSET", "MAIL", "RCPT", "RSET", "QUIT"]


class SlowRefusal(RelayPolicy):
    """A tarpit: every recipient refused, and every reset done, after a long pause."""

    async def handle_RCPT(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        """Refuse, slowly."""
        await asyncio.sleep(0.4)
        return "550 5.7.1 Relaying denied"

    async def handle_RSET(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        """Reset, slowly."""
        await asyncio.sleep(0.4)
        return "250 OK"


def test_a_tarpit_cannot_hold_the_relay_test_past_its_bound() -> None:
    """Each RCPT and RSET takes 0.4 s: the test stops at 8 read timeouts with what it has."""
    settings = dataclasses.replace(FAST, read_timeout=0.5)
    with mail_server("127.0.172.6", 2525, SlowRefusal()) as server:
        records = run_probes([("127.0.172.6", 2525)], LoopbackGate(), settings)
    relay = detail_of(records, 2525, "smtp-relay")
    assert relay["note"] == "relay test stopped at its time bound of 4 s"
    assert observed(records, 2525, "smtp-relay") == ["relay-refused"]
    assert relay["steps"][-2:] == [
        {"command": "RSET", "reply": [], "unread": True},
        {"command": "QUIT", "reply": [], "unread": True},
    ]
    assert 3 <= len(relay["attempts"]) < 8
    assert "DATA" not in server.log.commands


def test_own_domains_come_only_from_well_formed_names() -> None:
    """Banner and EHLO names are hostile text: only DNS names, the parent domain first."""
    assert own_domains(["mail.corp.test", "mail.corp.test", "mx.corp.test"]) == [
        "corp.test",
        "mail.corp.test",
    ]
    assert own_domains(["127.0.0.1", "localhost", "a b.test", "x" * 300 + ".test"]) == []
    assert own_domains(["Corp.Test."]) == ["corp.test"]
