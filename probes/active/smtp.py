"""The SMTP probe: banner, EHLO extensions, STARTTLS certificate, AUTH placement, relay test.

The relay test tries the sender and recipient combinations of
``relay_attempts`` one by one (MAIL FROM, RCPT TO, RSET), stops at the first
foreign recipient accepted, and ends with QUIT. It never sends DATA. The whole
test is bounded in time (``RELAY_READS`` reply waits), so a tarpit cannot hold it.

A verdict is only taken from replies matched to their commands: every reply is
read whole and bounded, and a reply that is malformed, over a bound, or comes
with bytes nobody asked for ends the conversation (RSET, QUIT) with no verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Final

from rolecall.probes.active.connection import (
    NETWORK_ERRORS,
    ProbeConnection,
    ProbeResult,
    ReplyError,
    certificate_hostnames,
    certificate_names,
    certificate_summary,
    evidence,
    observation,
    reply_code,
    service,
)
from rolecall.probes.active.relay_attempts import CONTROL, LOCAL_PART_FORMS, relay_attempts
from rolecall.probes.active.services import product_version
from rolecall.probes.active.settings import ProbeSettings

SUBMISSION_PORTS: Final = frozenset({587, 465})
"""Ports where SMTP with AUTH is message submission (RFC 6409, RFC 8314)."""

OPEN_RELAY: Final = "open-relay"
RELAY_REFUSED: Final = "relay-refused"
AUTH_REQUIRED: Final = "auth-required"
INCONCLUSIVE: Final = "inconclusive"

RELAY_READS: Final = 8
"""The relay test as a whole gets this many ``read_timeout`` s (a tarpit stops it there)."""
ACCEPTED: Final = frozenset({250, 251})
REFUSED: Final = frozenset({550, 551, 553, 554})


@dataclass(slots=True)
class SmtpSession:
    """What one SMTP conversation showed, step by step."""

    banner: list[str]
    implicit_tls: bool
    ehlo: list[str] = field(default_factory=list)
    extensions: dict[str, str] = field(default_factory=dict)
    starttls_reply: list[str] = field(default_factory=list)
    tls_ok: bool = False
    certificate: dict[str, str] = field(default_factory=dict)
    certificate_names: list[str] = field(default_factory=list)
    ehlo_after_tls: list[str] = field(default_factory=list)
    extensions_after_tls: dict[str, str] = field(default_factory=dict)
    steps: list[dict[str, object]] = field(default_factory=list)
    attempts: list[dict[str, object]] = field(default_factory=list)
    """The relay test's combinations tried: variant, sender, recipient, MAIL and RCPT codes."""
    relay_note: str = ""
    """Why the relay test stopped early or left variants out, or ""."""
    address: str = ""
    error: str = ""
    tls_error: str = ""
    desync: str = ""
    """Why the replies stopped matching the commands (no verdict then), or ""."""


def is_smtp_banner(lines: list[str]) -> bool:
    """Return whether a greeting reads as SMTP (220 and no FTP mark, or a mail word in it)."""
    if reply_code(lines) not in (220, 421, 554):
        return False
    text = " ".join(lines).upper()
    return "FTP" not in text or "SMTP" in text


def parse_extensions(lines: list[str]) -> dict[str, str]:
    """Return EHLO keywords (upper case) mapped to their parameters."""
    extensions: dict[str, str] = {}
    for line in lines[1:]:
        keyword, _, params = line[4:].strip().partition(" ")
        if keyword:
            extensions[keyword.upper()] = params.strip()
    return extensions


async def _command(conn: ProbeConnection, session: SmtpSession, line: str) -> list[str]:
    """Send one command, read its whole reply, and log both as a step.

    Raises ReplyError when the reply cannot be matched to this command: bytes
    arrived before it was sent or after its reply, or the reply is malformed.
    """
    verb = line.split(":", 1)[0] if ":" in line else line.split(" ", 1)[0]
    early = await conn.unasked()
    if early:
        raise ReplyError(f"{len(early)} unasked bytes arrived before {verb} was sent")
    await conn.send(line.encode("ascii") + b"\r\n")
    try:
        reply = await conn.read_reply(strict=True)
    except ReplyError as exc:
        session.steps.append({"command": line, "reply": exc.lines, "error": exc.reason})
        raise ReplyError(f"reply to {verb}: {exc.reason}", exc.lines) from exc
    session.steps.append({"command": line, "reply": reply})
    late = await conn.unasked()
    if late:
        raise ReplyError(f"{len(late)} unasked bytes followed the reply to {verb}")
    return reply


async def _abandon(conn: ProbeConnection, session: SmtpSession, exc: ReplyError) -> None:
    """Give up a conversation out of step with its commands: no verdict, then RSET and QUIT."""
    session.desync = f"desynchronised reply: {exc.reason}"
    # The replies can no longer be told apart, so they are not read; the server still
    # hears the transaction reset and the goodbye.
    with contextlib.suppress(*NETWORK_ERRORS):
        for line in ("RSET", "QUIT"):
            await conn.send(line.encode("ascii") + b"\r\n")
            session.steps.append({"command": line, "reply": [], "unread": True})


async def _greet(conn: ProbeConnection, session: SmtpSession, helo: str) -> list[str]:
    """EHLO (falling back to HELO); return the reply lines."""
    reply = await _command(conn, session, f"EHLO {helo}")
    if reply_code(reply) != 250:
        reply = await _command(conn, session, f"HELO {helo}")
    return reply


async def _starttls(conn: ProbeConnection, session: SmtpSession, settings: ProbeSettings) -> None:
    """Upgrade with STARTTLS, record the certificate, and greet again."""
    session.starttls_reply = await _command(conn, session, "STARTTLS")
    if reply_code(session.starttls_reply) != 220:
        return
    try:
        await conn.start_tls()
    except NETWORK_ERRORS as exc:
        # The connection is unusable now; the caller runs the relay test on a new one.
        session.tls_error = str(exc) or type(exc).__name__
        return
    session.tls_ok = True
    session.certificate = certificate_summary(conn.peer_certificate)
    session.certificate_names = certificate_names(conn.peer_certificate)
    session.ehlo_after_tls = await _greet(conn, session, settings.helo_name)
    session.extensions_after_tls = parse_extensions(session.ehlo_after_tls)


def server_names(session: SmtpSession) -> list[str]:
    """Return the names a server gives itself: banner, EHLO reply, then its certificate's."""
    names = [reply[0][4:].split(" ", 1)[0] for reply in (session.banner, session.ehlo) if reply]
    return names + session.certificate_names


async def _relay_test(conn: ProbeConnection, session: SmtpSession, settings: ProbeSettings) -> None:
    """Try the relay combinations (MAIL, RCPT, RSET each), then QUIT: never DATA.

    Past the time bound the conversation is given up (RSET and QUIT sent, not read);
    the combinations finished by then keep their replies.
    """
    budget = min(RELAY_READS * settings.read_timeout, settings.host_budget / 2)
    try:
        async with asyncio.timeout(budget) as bound:
            await _relay_attempts(conn, session, settings)
            await _command(conn, session, "QUIT")
    except TimeoutError:
        if not bound.expired():
            raise
        session.relay_note = f"relay test stopped at its time bound of {budget:g} s"
        with contextlib.suppress(*NETWORK_ERRORS):
            for line in ("RSET", "QUIT"):
                await conn.send(line.encode("ascii") + b"\r\n")
                session.steps.append({"command": line, "reply": [], "unread": True})


async def _relay_attempts(
    conn: ProbeConnection, session: SmtpSession, settings: ProbeSettings
) -> None:
    """Run each combination until one relays, AUTH is demanded, or the server says goodbye."""
    for attempt in relay_attempts(settings, session.address, server_names(session)):
        if attempt.variant in LOCAL_PART_FORMS and _control_accepted(session):
            session.relay_note = (
                "local-part forms not tried: the server accepts any local part at RCPT"
            )
            break
        record: dict[str, object] = {
            "variant": attempt.variant,
            "sender": attempt.sender,
            "recipient": attempt.recipient,
        }
        session.attempts.append(record)
        mail = reply_code(await _command(conn, session, f"MAIL FROM:<{attempt.sender}>"))
        record["mail"] = mail
        rcpt = 0
        if 200 <= mail < 300:
            rcpt = reply_code(await _command(conn, session, f"RCPT TO:<{attempt.recipient}>"))
            record["rcpt"] = rcpt
            if attempt.variant == CONTROL:
                session.steps[-1]["control"] = True
        if 421 in (mail, rcpt):
            return
        await _command(conn, session, "RSET")
        if (rcpt in ACCEPTED and attempt.variant != CONTROL) or mail == 530:
            return


def _control_accepted(session: SmtpSession) -> bool:
    """Return whether the server accepted the control recipient (an unknown local user)."""
    return any(
        item["variant"] == CONTROL and item.get("rcpt") in ACCEPTED for item in session.attempts
    )


async def run_session(
    conn: ProbeConnection,
    banner: list[str],
    settings: ProbeSettings,
    *,
    implicit_tls: bool,
    address: str = "",
    session: SmtpSession | None = None,
) -> SmtpSession:
    """Hold the whole probe conversation on an open connection whose banner was read.

    Given the session of an earlier connection whose STARTTLS handshake failed,
    continue it in plaintext: greet and run only the relay test.
    """
    retry = session is not None
    if session is None:
        session = SmtpSession(banner=banner, implicit_tls=implicit_tls, address=address)
    if implicit_tls:
        session.certificate = certificate_summary(conn.peer_certificate)
        session.certificate_names = certificate_names(conn.peer_certificate)
    try:
        if reply_code(banner) != 220:
            await _command(conn, session, "QUIT")
            return session
        ehlo = await _greet(conn, session, settings.helo_name)
        if not retry:
            session.ehlo = ehlo
            session.extensions = parse_extensions(ehlo)
            if "STARTTLS" in session.extensions and not implicit_tls:
                await _starttls(conn, session, settings)
                if session.tls_error:
                    return session
        await _relay_test(conn, session, settings)
    except ReplyError as exc:
        await _abandon(conn, session, exc)
    except NETWORK_ERRORS as exc:
        session.error = str(exc) or type(exc).__name__
    return session


def _reply_of(session: SmtpSession, verb: str) -> list[str]:
    """Return the reply to the first command starting with ``verb`` (empty if not sent)."""
    return next(iter(_replies_of(session, verb)), [])


def _replies_of(session: SmtpSession, verb: str) -> list[list[str]]:
    """Return the replies to every command starting with ``verb``, controls left out."""
    replies: list[list[str]] = []
    for step in session.steps:
        if str(step["command"]).startswith(verb) and not step.get("control"):
            reply = step["reply"]
            replies.append(list(reply) if isinstance(reply, list) else [])
    return replies


def relay_verdict(session: SmtpSession) -> str:
    """Classify the relay test: open-relay, relay-refused, auth-required or inconclusive.

    Open when any combination's foreign recipient was accepted (the control
    recipient, an unknown user of the server's own domain, never counts). A
    desynchronised conversation is always inconclusive: none of its replies is trusted.
    """
    if session.desync:
        return INCONCLUSIVE
    mail = {reply_code(reply) for reply in _replies_of(session, "MAIL FROM")}
    rcpt = {reply_code(reply) for reply in _replies_of(session, "RCPT TO")}
    if rcpt & ACCEPTED:
        return OPEN_RELAY
    if 530 in mail | rcpt:
        return AUTH_REQUIRED
    if rcpt & REFUSED or 554 in mail:
        return RELAY_REFUSED
    return INCONCLUSIVE


def _auth_mechanisms(extensions: dict[str, str]) -> list[str]:
    """Return the AUTH mechanisms an EHLO reply offers, sorted (AUTH=... old form too)."""
    params = extensions.get("AUTH", "") + " " + extensions.get("AUTH=", "")
    for keyword, value in extensions.items():
        if keyword.startswith("AUTH="):
            params += " " + keyword[5:] + " " + value
    return sorted({m.upper() for m in params.split()})


def session_records(address: str, port: int, session: SmtpSession) -> ProbeResult:
    """Turn an SMTP session into Observations and a Service record."""
    result = ProbeResult()
    plain = not session.implicit_tls
    proto = {"banner": session.banner, "implicit_tls": session.implicit_tls}
    if session.error:
        proto["error"] = session.error
    result.records.append(observation(address, port, "protocol", "smtp", evidence(**proto)))
    keywords = " ".join(sorted(session.extensions))
    if session.ehlo:
        detail = evidence(ehlo=session.ehlo, tls=session.implicit_tls)
        result.records.append(observation(address, port, "smtp-extensions", keywords, detail))
    if session.starttls_reply:
        value = "ok" if session.tls_ok else "failed"
        detail = evidence(
            reply=session.starttls_reply,
            certificate=session.certificate,
            ehlo_after_tls=session.ehlo_after_tls,
            error=session.tls_error,
        )
        result.records.append(observation(address, port, "smtp-starttls", value, detail))
    if session.certificate:
        subject = session.certificate.get("subject", "")
        detail = evidence(**session.certificate)
        result.records.append(observation(address, port, "tls-certificate", subject, detail))
    result.records += certificate_hostnames(address, session.certificate_names)
    before = _auth_mechanisms(session.extensions)
    after = _auth_mechanisms(session.extensions_after_tls)
    if before or after:
        plaintext = bool(before) and plain
        detail = evidence(
            before_tls=before,
            after_tls=after,
            plaintext=plaintext,
            implicit_tls=session.implicit_tls,
        )
        result.records.append(
            observation(address, port, "smtp-auth", " ".join(before or after), detail)
        )
        if plaintext:
            result.records.append(
                observation(address, port, "smtp-plaintext-auth", " ".join(before), detail)
            )
    verdict = relay_verdict(session)
    if session.desync or _reply_of(session, "MAIL FROM"):
        facts: dict[str, object] = {
            "steps": session.steps,
            "tls": session.tls_ok or session.implicit_tls,
            "attempts": session.attempts,
        }
        accepted = _accepted(session) if verdict == OPEN_RELAY else None
        if accepted is not None:
            facts["accepted"] = accepted
        if session.relay_note:
            facts["note"] = session.relay_note
        if session.desync:
            facts["no_verdict"] = session.desync
        detail = evidence(**facts)
        result.records.append(observation(address, port, "smtp-relay", verdict, detail))
    product, version = product_version(" ".join(session.banner))
    result.records.append(
        service(
            address,
            port,
            "smtp",
            product=product,
            version=version,
            auth=_auth_summary(verdict, before, after),
            banner="\n".join(session.banner),
        )
    )
    return result


def _accepted(session: SmtpSession) -> dict[str, object] | None:
    """Return the combination whose foreign recipient was accepted (variant, sender, recipient)."""
    for item in session.attempts:
        if item["variant"] != CONTROL and item.get("rcpt") in ACCEPTED:
            return {key: item[key] for key in ("variant", "sender", "recipient")}
    return None


def _auth_summary(verdict: str, before: list[str], after: list[str]) -> str:
    """Say how the server treats authentication: none, required, starttls+auth or offered."""
    if verdict == AUTH_REQUIRED:
        return "starttls+auth" if after and not before else "required"
    if verdict in (OPEN_RELAY, RELAY_REFUSED):
        return "none"
    return "offered" if before or after else ""


async def probe_smtp(
    address: str, port: int, settings: ProbeSettings, *, implicit_tls: bool = False
) -> ProbeResult:
    """Connect (with TLS for implicit-TLS ports), read the banner and run the SMTP probe."""
    result = ProbeResult()
    try:
        conn = await ProbeConnection.open(address, port, settings, tls=implicit_tls)
    except NETWORK_ERRORS:
        return result
    try:
        try:
            banner = await conn.read_reply()
        except NETWORK_ERRORS:
            result.seen = bytes(conn.seen)
            return result
        if not is_smtp_banner(banner):
            result.seen = bytes(conn.seen)
            return result
        return await converse(address, port, conn, banner, settings, implicit_tls=implicit_tls)
    finally:
        await conn.close()


async def converse(
    address: str,
    port: int,
    conn: ProbeConnection,
    banner: list[str],
    settings: ProbeSettings,
    *,
    implicit_tls: bool,
) -> ProbeResult:
    """Run the SMTP probe on a connection whose banner was read, and say what it showed."""
    session = await run_session(conn, banner, settings, implicit_tls=implicit_tls, address=address)
    if session.tls_error:
        await _relay_test_in_plaintext(address, port, settings, session)
    return session_records(address, port, session)


async def _relay_test_in_plaintext(
    address: str, port: int, settings: ProbeSettings, session: SmtpSession
) -> None:
    """After a failed STARTTLS handshake, run the relay test on a new plaintext connection."""
    try:
        conn = await ProbeConnection.open(address, port, settings, tls=False)
    except NETWORK_ERRORS as exc:
        session.error = str(exc) or type(exc).__name__
        return
    try:
        banner = await conn.read_reply()
        await run_session(conn, banner, settings, implicit_tls=False, session=session)
    except NETWORK_ERRORS as exc:
        session.error = str(exc) or type(exc).__name__
    finally:
        await conn.close()
