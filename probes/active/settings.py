"""Settings of the active probes: timeouts, budgets, concurrency and what to try.

Every limit has a safe default. The orchestrator builds one ``ProbeSettings``
from its configuration and passes it in; nothing here reads a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from rolecall.probes.errors import InputError

PROBE_NAMES: Final = ("socks", "smtp", "web", "dns", "ssh", "ftp", "pop3", "imap")
"""Every probe ``ProbeSettings.probes`` may name."""


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    """How the active probes may talk to a target: every bound and every choice in one place."""

    connect_timeout: float = 3.0
    """Seconds to wait for a TCP (and TLS) connection to open."""
    read_timeout: float = 4.0
    """Seconds one reply may take in total, however slowly its bytes drip in."""
    banner_timeout: float = 2.0
    """Seconds to wait for a server that speaks first (SMTP, SSH, FTP, POP3, IMAP)."""
    host_budget: float = 60.0
    """Seconds all probes of one host may take together; past it the host's probes stop."""
    concurrency: int = 32
    """Ports probed at the same time over all targets (a silent port holds up to five probe
    connections while its client-first probes run side by side)."""
    connect_rate: float = 200.0
    """New connections per second over the whole run, at most."""
    max_reply_bytes: int = 65536
    """Bytes kept from one reply; the rest is cut (and counted as cut), never accumulated."""
    max_line_bytes: int = 2048
    """Bytes kept from one protocol line."""
    probes: tuple[str, ...] = PROBE_NAMES
    """Which probes run (names from ``PROBE_NAMES``)."""
    relay_sender: str = "rolecall-probe@example.com"
    """MAIL FROM of the SMTP relay test: an outside address (a reserved example domain)."""
    relay_recipient: str = "rolecall-probe@example.net"
    """RCPT TO of the SMTP relay test: an address in a foreign domain (reserved by default)."""
    helo_name: str = "rolecall-probe.invalid"
    """Name rolecall gives itself in EHLO/HELO."""
    canary_bind: str = ""
    """Address the SOCKS canary listens on; empty: this host's address toward each target."""
    ftp_anonymous: bool = True
    """Whether the FTP probe tries an anonymous login (USER anonymous, PASS, QUIT; nothing else)."""
    ftp_password: str = "rolecall-probe@example.com"  # noqa: S105 - a mail address, by convention
    """Password given with USER anonymous: a probe address, by convention."""

    def __post_init__(self) -> None:
        """Refuse settings no probe could run with: one clear sentence naming the setting."""
        for name in ("connect_timeout", "read_timeout", "banner_timeout", "host_budget"):
            if not getattr(self, name) > 0:
                raise InputError(f"probe setting {name} must be a positive number of seconds.")
        if not self.connect_rate > 0:
            raise InputError("probe setting connect_rate must be a positive number per second.")
        if self.concurrency < 1:
            raise InputError("probe setting concurrency must be at least 1.")
        if self.max_reply_bytes < 64 or self.max_line_bytes < 64:
            raise InputError("probe settings max_reply_bytes and max_line_bytes must be >= 64.")
        unknown = sorted(set(self.probes) - set(PROBE_NAMES))
        if unknown:
            raise InputError(
                f"unknown probe name(s) {', '.join(unknown)}; known: {', '.join(PROBE_NAMES)}."
            )
        for name in ("relay_sender", "relay_recipient", "ftp_password"):
            value = getattr(self, name)
            if "@" not in value or any(c in value for c in "<>\r\n "):
                raise InputError(f"probe setting {name} must be a plain mail address: {value!r}.")

    def runs(self, probe: str) -> bool:
        """Return whether the named probe is enabled."""
        return probe in self.probes
