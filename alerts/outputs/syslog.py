"""The syslog output: RFC 5424 messages, JSON (ECS) or CEF, over UDP, TCP or TLS."""

from __future__ import annotations

import json
import os
import select
import socket
import ssl
from collections.abc import Sequence
from dataclasses import replace
from typing import Final, Literal

from pydantic import Field, field_validator

from rolecall.alerts.event import AlertEvent
from rolecall.alerts.formats import rfc5424
from rolecall.alerts.formats.cef import cef_line
from rolecall.alerts.formats.ecs import ecs_document
from rolecall.alerts.outputs.common import AlertOutput, Delivered, DeliveryError, OutputSettings
from rolecall.alerts.outputs.trust import CaFile, verifying_context

SD_ID: Final = "rolecall@32473"
"""The structured data element's id; 32473 is the enterprise number RFC 5612 sets aside for
examples, as rolecall has none of its own."""

DEFAULT_PORTS: Final = {"udp": 514, "tcp": 514, "tls": 6514}
COMPACT_SUMMARY: Final = 1000
COMPACT_EVIDENCE: Final = 20
LINGER_SECONDS: Final = 2.0
"""How long closing waits for the receiver to close its side."""


class Settings(OutputSettings):
    """An `[[alerts]]` entry of type "syslog"."""

    type: Literal["syslog"]
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(default=0, ge=0, le=65535)
    """0: the transport's standard port, 514 (udp, tcp) or 6514 (tls)."""
    transport: Literal["udp", "tcp", "tls"] = "tcp"
    ca_file: CaFile = ""
    """TLS: trust this file's CAs instead of the system's."""
    format: Literal["json", "cef"] = "json"
    facility: str = "local0"
    app_name: str = Field(default="rolecall", pattern=r"^[!-~]{1,48}$")
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    @field_validator("facility")
    @classmethod
    def _known_facility(cls, value: str) -> str:
        """A facility name of RFC 5424 (kern ... local7)."""
        if value not in rfc5424.FACILITIES:
            raise ValueError(f"must be one of {', '.join(rfc5424.FACILITIES)}")
        return value

    @property
    def where(self) -> str:
        """The receiver as a sentence names it."""
        return f"syslog receiver {self.host}:{self.target_port} over {self.transport}"

    @property
    def target_port(self) -> int:
        """The port to send to."""
        return self.port or DEFAULT_PORTS[self.transport]


def reason(exc: OSError, timeout: float) -> str:
    """Why a connection or send failed, in a few words."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"its certificate is not trusted ({exc.verify_message})"
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return (exc.strerror or str(exc) or type(exc).__name__).rstrip(".").lower()


class SyslogOutput:
    """One connection (or UDP socket) to a syslog receiver, opened when first needed."""

    def __init__(self, settings: Settings, context: ssl.SSLContext | None) -> None:
        """Keep the settings; nothing is connected yet."""
        self._settings = settings
        self._context = context
        self._header = rfc5424.Header(
            facility=settings.facility,
            hostname=socket.gethostname(),
            app_name=settings.app_name,
            procid=str(os.getpid()),
            msgid="",
        )
        self._socket: socket.socket | None = None

    def deliver(self, events: Sequence[AlertEvent]) -> Delivered:
        """Send each event as one message; a connection lost on the way is reopened once."""
        if self._socket is not None and self._peer_closed(self._socket):
            self._abandon()
        reconnected = False
        for index, event in enumerate(events):
            data = self.frame(event)
            while True:
                fresh = self._socket is None
                try:
                    if self._socket is None:
                        self._socket = self._connect()
                    self._socket.sendall(data)
                    break
                except OSError as exc:
                    self._abandon()
                    if fresh or reconnected:
                        why = reason(exc, self._settings.timeout_seconds)
                        return Delivered(index, f"{self._settings.where}: {why}")
                    reconnected = True
        return Delivered(len(events))

    def frame(self, event: AlertEvent) -> bytes:
        """The event as its transport carries it: one datagram, or an octet-counted frame."""
        data = self._message(event, compact=False)
        if self._settings.transport != "udp":
            return rfc5424.octet_counted(data)
        if len(data) > rfc5424.UDP_LIMIT:
            data = self._message(event, compact=True)
        return rfc5424.datagram(data)

    def _message(self, event: AlertEvent, *, compact: bool) -> bytes:
        """The RFC 5424 message; compact cuts the summary and evidence to fit a datagram."""
        if compact:
            event = replace(
                event,
                summary=event.summary[:COMPACT_SUMMARY],
                evidence=event.evidence[:COMPACT_EVIDENCE],
                note=event.note[:COMPACT_SUMMARY],
            )
        if self._settings.format == "cef":
            text = cef_line(event)
        else:
            text = json.dumps(ecs_document(event), ensure_ascii=False, separators=(",", ":"))
        element = rfc5424.structured_data(
            SD_ID,
            {
                "finding": event.finding_id,
                "sequence": str(event.sequence),
                "severity": event.severity,
            },
        )
        header = replace(self._header, msgid=event.action)
        return rfc5424.message(header, event.severity, event.at, [element], text)

    def _connect(self) -> socket.socket:
        """A connected socket to the receiver: UDP, TCP, or TLS with the certificate verified."""
        settings = self._settings
        address = (settings.host, settings.target_port)
        if settings.transport == "udp":
            family, kind, proto, _, target = socket.getaddrinfo(*address, type=socket.SOCK_DGRAM)[0]
            udp = socket.socket(family, kind, proto)
            udp.settimeout(settings.timeout_seconds)
            try:
                udp.connect(target)
            except OSError:
                udp.close()
                raise
            return udp
        stream = socket.create_connection(address, timeout=settings.timeout_seconds)
        if self._context is None:
            return stream
        try:
            return self._context.wrap_socket(stream, server_hostname=settings.host)
        except OSError:
            stream.close()
            raise

    def _peer_closed(self, connection: socket.socket) -> bool:
        """Whether a stream's peer hung up; what it sent meanwhile (TLS tickets) is read away.

        A syslog receiver never sends data, so end of input means it closed the connection.
        """
        if connection.type != socket.SOCK_STREAM:
            return False
        try:
            readable, _, _ = select.select([connection], [], [], 0)
            if not readable:
                return False
            connection.setblocking(False)
            try:
                while connection.recv(4096):
                    pass
            except (ssl.SSLWantReadError, BlockingIOError):
                return False
            finally:
                connection.settimeout(self._settings.timeout_seconds)
        except (OSError, ValueError):
            return True
        return True

    def _abandon(self) -> None:
        """Drop a connection that failed or whose peer left, without waiting for anything."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def close(self) -> None:
        """Close the connection gracefully, if one is open.

        Half-close first and read until the receiver closes too (a short while at most): closing
        with unread input (TLS session tickets) would reset the connection, and a reset makes
        the receiver drop messages it has not read yet.
        """
        connection, self._socket = self._socket, None
        if connection is None:
            return
        try:
            if connection.type == socket.SOCK_STREAM:
                connection.shutdown(socket.SHUT_WR)
                connection.settimeout(min(self._settings.timeout_seconds, LINGER_SECONDS))
                while connection.recv(4096):
                    pass
        except (OSError, ValueError):
            pass
        finally:
            connection.close()


def open_output(settings: Settings) -> AlertOutput:
    """The syslog output for these settings; DeliveryError for settings it cannot use."""
    if settings.ca_file and settings.transport != "tls":
        raise DeliveryError(
            f"alerts {settings.name}: ca_file is set but transport is {settings.transport}, not tls"
        )
    context = None
    if settings.transport == "tls":
        context = verifying_context(settings.ca_file, f"alerts {settings.name}")
    return SyslogOutput(settings, context)
