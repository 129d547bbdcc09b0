"""Which MITRE ATT&CK techniques a finding's rule points at, where one fits."""

from __future__ import annotations

from typing import Final

PROXY: Final = "T1090"
"""Proxy: a host relaying others' traffic (an open SOCKS/HTTP proxy, mail sent through one)."""
MAIL_PROTOCOLS: Final = "T1071.003"
"""Application Layer Protocol: Mail Protocols: a host using SMTP as it should not."""

RULE_TECHNIQUES: Final[dict[str, tuple[str, ...]]] = {
    "open-socks-proxy": (PROXY,),
    "open-http-proxy": (PROXY,),
    "mail-via-proxy": (PROXY, MAIL_PROTOCOLS),
    "open-relay": (MAIL_PROTOCOLS,),
    "unexpected-mail-client": (MAIL_PROTOCOLS,),
    "mass-mailer-software": (MAIL_PROTOCOLS,),
    "relay-refused": (MAIL_PROTOCOLS,),
    "direct-external-smtp": (MAIL_PROTOCOLS,),
    "new-smtp-client": (MAIL_PROTOCOLS,),
    "smtp-client-surge": (MAIL_PROTOCOLS,),
    # Talking to a blocklisted peer, a password sent in clear and an anonymous FTP login
    # name no technique by themselves: which one depends on what the traffic was for.
    "blocklisted-peer": (),
    "plaintext-auth": (),
    "anonymous-ftp": (),
}


def techniques(rule: str) -> tuple[str, ...]:
    """The ATT&CK technique ids that fit a rule's findings (none for a rule not mapped)."""
    return RULE_TECHNIQUES.get(rule, ())
