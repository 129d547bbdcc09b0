"""How nmap is run: ports, timing, rate and name resolution, validated before use."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NmapSettings:
    """How nmap is run; every value is validated before it reaches the command line.

    top_ports, when not 0, replaces ports: nmap's own list of its most common TCP ports.
    """

    nmap: str = "nmap"
    ports: str = (
        "21,22,25,53,80,110,143,443,465,587,993,995,1080,1081,2525,3128,4145,8000,8080,8081,"
        "8118,8888,9050,9150,10080"
    )
    top_ports: int = 0
    service_detection: bool = False
    timing: int = 3
    host_timeout: int = 300
    max_rate: int = 0
    max_retries: int = 2
    skip_host_discovery: bool = False
    resolve_names: bool = True
