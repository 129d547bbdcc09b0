"""The finding rules, one module each; every rule names the evidence rows it reads.

A rule reacts to new evidence rows (``observation``, ``smtp``, ``socks``, ``flow``:
the finding grows with its evidence) or looks at a host's current state
(``hosts``: roles and groups; the finding is replaced, or resolved if no longer
supported) or judges the daily series (``series``: the days derivation has just
recomputed). Adding a rule is a module here and its line in ``all_rules``.
"""

from __future__ import annotations

from rolecall.inventory.rules import (
    anonymous_ftp,
    blocklisted_peer,
    direct_external_smtp,
    mail_via_proxy,
    mass_mailer_software,
    new_smtp_client,
    open_http_proxy,
    open_relay,
    open_socks_proxy,
    plaintext_auth,
    relay_refused,
    smtp_client_surge,
    unexpected_mail_client,
)
from rolecall.inventory.rules.base import Rule


def all_rules() -> tuple[Rule, ...]:
    """Every finding rule, in the order derivation runs them."""
    return (
        open_socks_proxy.RULE,
        open_http_proxy.RULE,
        open_relay.RULE,
        unexpected_mail_client.RULE,
        mass_mailer_software.RULE,
        mail_via_proxy.RULE,
        relay_refused.RULE,
        direct_external_smtp.RULE,
        new_smtp_client.RULE,
        blocklisted_peer.RULE,
        plaintext_auth.RULE,
        anonymous_ftp.RULE,
        smtp_client_surge.RULE,
    )
