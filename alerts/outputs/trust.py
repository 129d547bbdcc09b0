"""The TLS trust of the network outputs: the system's CAs, or a CA file where one is set."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator

from rolecall.alerts.outputs.common import DeliveryError


def _existing_file(value: str) -> str:
    """A CA file must be there at load, not found missing at the first delivery ("" = none)."""
    if value and not Path(value).is_file():
        raise ValueError(f"{value!r} is not a file")
    return value


CaFile = Annotated[str, AfterValidator(_existing_file)]
"""The ca_file setting of a network output: a file that exists, or "" for the system's CAs."""


def verifying_context(ca_file: str, where: str) -> ssl.SSLContext:
    """A client context verifying certificate and host name; DeliveryError for a bad CA file.

    With no ca_file the system's CAs are trusted; with one, only that file's CAs, so a private
    receiver's CA does not widen what else is trusted.
    """
    try:
        return ssl.create_default_context(cafile=ca_file or None)
    except ssl.SSLError as exc:
        reason = exc.reason or exc
        raise DeliveryError(f"{where}: CA file {ca_file} holds no certificate: {reason}") from None
    except OSError as exc:
        raise DeliveryError(f"{where}: cannot read CA file {ca_file}: {exc.strerror}") from None
