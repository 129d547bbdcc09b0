"""How to reach the mail relay a report is sent through."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RelaySettings:
    """How to reach the relay; the password is already read from its file."""

    host: str
    port: int
    tls: str = "starttls"
    user: str = ""
    password: str = ""
    timeout: float = 30.0
    ca_file: str = ""
