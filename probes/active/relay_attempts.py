"""The sender and recipient combinations the SMTP relay test tries, in order.

Many misconfigured relays take a foreign recipient only when MAIL FROM claims
the server's own domain (spammers forge it), or when the recipient is written
in an old routing form. Of the 16 tests of nmap's smtp-open-relay script these
are kept: the foreign, null (``<>``), own-domain and address-literal senders to a
plain foreign recipient, the source route (``@server:user@foreign``), the
percent hack (``user%foreign@own``), the bang path (``foreign!user@own``) and
the quoted local part (``"user@foreign"@own``). nmap's others are the same
forms with the address literal in place of the domain, or not addresses at
all (``user@foreign@server``, unqualified forms) that a server refuses as syntax.

The last three put the foreign address inside a local part of the server's own
domain, where a 250 may only mean the server takes any local part at RCPT and
bounces later. So a control recipient (an unknown user of the own domain) goes
first, and they are tried only if the server refuses it: then a 250 means the
server read the foreign address out of the local part.

Every recipient's final domain is the configured (reserved, by default)
foreign one, so nothing could ever be delivered; the test never sends DATA.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final

from rolecall.probes.active.connection import dns_name
from rolecall.probes.active.settings import ProbeSettings

MAX_OWN_DOMAINS: Final = 2
"""Own domains whose forged senders are tried (the organisation's domain, the host's name)."""

CONTROL: Final = "control-unknown-local-user"
LOCAL_PART_FORMS: Final = ("percent-hack", "bang-path", "quoted-local-part")
"""Variants hiding the foreign address in a local part: tried only after a refused control."""


@dataclass(frozen=True, slots=True)
class RelayAttempt:
    """One MAIL FROM / RCPT TO combination; ``variant`` names it in the evidence."""

    variant: str
    sender: str
    recipient: str


def own_domains(names: list[str]) -> list[str]:
    """Return the mail domains a server's names suggest: each name's parent first, then itself.

    ``names`` come from the banner, the EHLO reply and the certificate (hostile
    text: only well-formed DNS names are kept). A parent needs two labels.
    """
    hosts = [name for name in (dns_name(text) for text in names) if name]
    parents = [host.split(".", 1)[1] for host in hosts if host.count(".") >= 2]
    domains: list[str] = []
    for domain in [*parents, *hosts]:
        if domain not in domains:
            domains.append(domain)
    return domains[:MAX_OWN_DOMAINS]


def address_literal(address: str) -> str:
    """Return the SMTP address literal of an IP address ([192.0.2.1], [IPv6:2001:db8::1])."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return ""
    return f"[IPv6:{ip.compressed}]" if ip.version == 6 else f"[{ip}]"


def sender_attempts(settings: ProbeSettings, address: str, domains: list[str]) -> list[str]:
    """Return the senders to try with a plain foreign recipient, the usual first."""
    local = settings.relay_sender.rsplit("@", 1)[0]
    senders = [settings.relay_sender, ""]
    senders += [f"{local}@{domain}" for domain in domains]
    literal = address_literal(address)
    if literal:
        senders.append(f"{local}@{literal}")
    return list(dict.fromkeys(senders))


def relay_attempts(settings: ProbeSettings, address: str, names: list[str]) -> list[RelayAttempt]:
    """Return every combination the relay test may try, in order (local-part forms last)."""
    domains = own_domains(names)
    foreign = settings.relay_recipient
    attempts = [
        RelayAttempt(_sender_variant(sender, settings), sender, foreign)
        for sender in sender_attempts(settings, address, domains)
    ]
    own = domains[0] if domains else address_literal(address)
    if not own:
        return attempts
    route = (dns_name(names[0]) if names else "") or own
    user, _, place = foreign.rpartition("@")
    sender = settings.relay_sender
    attempts += [
        RelayAttempt("source-route", sender, f"@{route}:{foreign}"),
        RelayAttempt(CONTROL, sender, f"{user}-no-such-user@{own}"),
        RelayAttempt("percent-hack", sender, f"{user}%{place}@{own}"),
        RelayAttempt("bang-path", sender, f"{place}!{user}@{own}"),
        RelayAttempt("quoted-local-part", sender, f'"{foreign}"@{own}'),
    ]
    return attempts


def _sender_variant(sender: str, settings: ProbeSettings) -> str:
    """Name the kind of a sender: foreign, null, address literal or own domain."""
    if sender == settings.relay_sender:
        return "foreign-sender"
    if not sender:
        return "null-sender"
    if sender.endswith("]"):
        return "address-literal-sender"
    return "own-domain-sender"
