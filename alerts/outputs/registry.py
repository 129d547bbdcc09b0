"""The alert output types: each `type` of an `[[alerts]]` entry, its settings and its opener."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Final

from pydantic import Field

from rolecall.alerts.outputs import email, jsonl, syslog, webhook
from rolecall.alerts.outputs.common import AlertOutput, DeliveryError, OutputSettings

AlertSettings = Annotated[
    jsonl.Settings | syslog.Settings | webhook.Settings | email.Settings,
    Field(discriminator="type"),
]
"""One `[[alerts]]` entry, validated by the model its `type` names."""

TYPES: Final = ("jsonl", "syslog", "webhook", "email")


def open_output(settings: OutputSettings, mail: Callable[[], email.MailRelay]) -> AlertOutput:
    """Open the output an entry describes; `mail` gives the `[email]` relay (read only if used)."""
    match settings:
        case jsonl.Settings():
            return jsonl.open_output(settings)
        case syslog.Settings():
            return syslog.open_output(settings)
        case webhook.Settings():
            return webhook.open_output(settings)
        case email.Settings():
            return email.open_output(settings, mail())
    raise DeliveryError(f"alerts {settings.name}: not an output type of {', '.join(TYPES)}")
