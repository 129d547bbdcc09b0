"""Where the demo lab's hosts live: their addresses inside the lab network and their ports."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rolecall.orchestrator.errors import UsageError

DEFAULT_NETWORK = "127.0.60.0/24"
DEFAULT_OUT = Path("rolecall-demo")

SMTP_PORT = 2525
SUBMISSION_PORT = 5870
SOCKS_PORT = 1080
WEB_PORT = 8080
LOCAL_DOMAIN = "corp.example"
DEMO_USER = "alice"
DEMO_PASSWORD = "demo-password"  # noqa: S105 - a throwaway credential of the loopback lab
HOSTS = {
    "www": 10,  # a web server (that also sends spam)
    "relay": 20,  # an open mail relay
    "mx": 21,  # the corporate MTA: refuses foreign recipients
    "submit": 22,  # authenticated submission (STARTTLS, then AUTH)
    "proxy": 30,  # an open SOCKS5 proxy
    "authproxy": 31,  # a SOCKS5 proxy that demands a password
    "ws-proxied": 40,  # a workstation whose mail goes through the open proxy
    "ws-refused": 41,  # a workstation that tries to relay through the corporate MTA
    "ws-user": 42,  # a well-behaved user: submission with AUTH, web, the password proxy
}
SERVERS = ("www", "relay", "mx", "submit", "proxy", "authproxy")
PORTS = f"{SOCKS_PORT},{SMTP_PORT},{SUBMISSION_PORT},{WEB_PORT}"


@dataclass(frozen=True)
class LabAddresses:
    """Where each lab host lives inside the lab network."""

    network: str
    by_name: dict[str, str]

    @classmethod
    def within(cls, network: str) -> LabAddresses:
        """Place the lab hosts in network (a /26 or larger)."""
        import netaddr  # noqa: PLC0415 - `rolecall --help` loads this module's defaults

        try:
            net = netaddr.IPNetwork(network)
        except (netaddr.AddrFormatError, ValueError):
            raise UsageError(f"demo network {network!r} is not a CIDR network") from None
        if net.version != 4 or not net.ip.is_loopback() or net.size < 64:
            raise UsageError(f"demo network {network} must be a loopback IPv4 /26 or larger")
        return cls(str(net.cidr), {name: str(net.network + n) for name, n in HOSTS.items()})

    def __getitem__(self, name: str) -> str:
        """The address of a lab host."""
        return self.by_name[name]

    def name_of(self, address: str) -> str:
        """The lab name of an address ("" if none)."""
        return next((name for name, a in self.by_name.items() if a == address), "")
