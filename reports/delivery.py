"""Sending a report by SMTP through a relay: implicit TLS or STARTTLS, AUTH, timeouts."""

from __future__ import annotations

import ipaddress
import smtplib
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from rolecall.reports.errors import DeliveryError
from rolecall.reports.relay_settings import RelaySettings

TLS_MODES = ("starttls", "implicit", "none")


@dataclass(frozen=True)
class Attachment:
    """A file attached to the message."""

    name: str
    data: bytes
    maintype: str = "text"
    subtype: str = "csv"


def build_message(
    subject: str,
    sender: str,
    recipients: Sequence[str],
    text: str,
    html: str,
    attachments: Sequence[Attachment] = (),
) -> EmailMessage:
    """A MIME message: plain text and HTML alternatives, then the attachments."""
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "rolecall.invalid")
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    for attachment in attachments:
        if attachment.maintype == "text":
            message.add_attachment(
                attachment.data.decode("utf-8"),
                subtype=attachment.subtype,
                filename=attachment.name,
            )
        else:
            message.add_attachment(
                attachment.data,
                maintype=attachment.maintype,
                subtype=attachment.subtype,
                filename=attachment.name,
            )
    return message


def _context(settings: RelaySettings) -> ssl.SSLContext:
    """A verifying TLS context, trusting ca_file too when one is set."""
    context = ssl.create_default_context()
    if settings.ca_file:
        try:
            context.load_verify_locations(cafile=settings.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise DeliveryError(f"cannot read CA file {settings.ca_file}: {exc}") from None
    return context


def _refuse_clear_auth(settings: RelaySettings) -> None:
    """Never send the relay password in clear, except to a relay on this machine's loopback."""
    if settings.tls != "none":
        return
    try:
        local = ipaddress.ip_address(settings.host).is_loopback
    except ValueError:
        local = settings.host == "localhost"
    if not local:
        raise DeliveryError(
            f"email.user is set but email.tls is none: refusing to send the password to"
            f" {settings.host} in clear (use starttls or implicit)"
        )


def _connect(settings: RelaySettings) -> smtplib.SMTP:
    """Open the session, with TLS as configured, before anything else is said."""
    if settings.tls not in TLS_MODES:
        raise DeliveryError(f"email.tls must be one of {', '.join(TLS_MODES)}")
    if settings.tls == "implicit":
        return smtplib.SMTP_SSL(
            settings.host, settings.port, timeout=settings.timeout, context=_context(settings)
        )
    client = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    if settings.tls == "starttls":
        client.ehlo()
        if not client.has_extn("starttls"):
            client.close()
            raise DeliveryError(
                f"relay {settings.host}:{settings.port} does not offer STARTTLS;"
                " refusing to send the report in clear"
            )
        client.starttls(context=_context(settings))
        client.ehlo()
    return client


def _describe(settings: RelaySettings, exc: Exception) -> str:
    """One sentence saying why delivery failed."""
    where = f"relay {settings.host}:{settings.port}"
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return f"{where} refused the login for {settings.user!r}: {exc.smtp_code}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = ", ".join(sorted(exc.recipients))
        return f"{where} refused the recipients {refused}"
    if isinstance(exc, smtplib.SMTPResponseException):
        error = exc.smtp_error
        reply = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
        return f"{where} refused the report: {exc.smtp_code} {reply}".rstrip()
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return f"{where} does not support AUTH: {exc}"
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return f"TLS with {where} failed: {exc}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"{where} did not answer within {settings.timeout:g} seconds"
    if isinstance(exc, ConnectionRefusedError):
        return f"{where} refused the connection (is the relay running?)"
    if isinstance(exc, smtplib.SMTPException | OSError):
        return f"cannot deliver the report through {where}: {exc}"
    return f"cannot deliver the report through {where}: {type(exc).__name__}"


def send(settings: RelaySettings, message: EmailMessage, recipients: Sequence[str]) -> None:
    """Deliver the message to every recipient or raise DeliveryError with one sentence."""
    if not settings.host:
        raise DeliveryError("no relay configured: set email.host in the config")
    if settings.user:
        _refuse_clear_auth(settings)
    try:
        client = _connect(settings)
        try:
            if settings.user:
                client.login(settings.user, settings.password)
            client.send_message(message, to_addrs=list(recipients))
        finally:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()
    except DeliveryError:
        raise
    except (smtplib.SMTPException, OSError, ssl.CertificateError) as exc:
        raise DeliveryError(_describe(settings, exc)) from exc
