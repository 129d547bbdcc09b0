"""Port discovery with nmap, run through python-nmap, one chunk of addresses at a time."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator, Sequence

import netaddr
import nmap

from rolecall.probes.errors import InputError, ProbeError
from rolecall.probes.gate import NetworkGate
from rolecall.probes.nmap.settings import NmapSettings
from rolecall.probes.nmap.xml import read_nmap_xml
from rolecall.probes.records import Record

INSTALL_HINT = "install it with `apt-get install nmap` (Debian/Ubuntu) or from nmap.org"


def nmap_arguments(settings: NmapSettings, ipv6: bool = False) -> list[str]:
    """The nmap options for a settings: a TCP connect scan, so no raw sockets are needed."""
    args = ["-sT", f"-T{settings.timing}", "--host-timeout", f"{settings.host_timeout}s"]
    args += ["--max-retries", str(settings.max_retries)]
    if settings.service_detection:
        args.append("-sV")
    if settings.skip_host_discovery:
        args.append("-Pn")
    if not settings.resolve_names:
        args.append("-n")
    if settings.max_rate:
        args += ["--max-rate", str(settings.max_rate)]
    if ipv6:
        args.append("-6")
    return args


def find_nmap(program: str) -> str:
    """Return the path of the nmap executable, or raise ProbeError saying how to install it."""
    found = shutil.which(program)
    if found is None:
        raise ProbeError(f"nmap was not found (looked for {program!r}): {INSTALL_HINT}")
    return found


def chunk_networks(addresses: netaddr.IPSet, size: int) -> Iterator[list[netaddr.IPNetwork]]:
    """Split an address set into lists of networks of at most size addresses, one family each."""
    chunk: list[netaddr.IPNetwork] = []
    held = 0
    for cidr in addresses.iter_cidrs():
        pieces = [cidr] if cidr.size <= size else cidr.subnet(_prefix_for(cidr, size))
        for piece in pieces:
            family_changes = bool(chunk) and chunk[-1].version != piece.version
            if chunk and (held + piece.size > size or family_changes):
                yield chunk
                chunk, held = [], 0
            chunk.append(piece)
            held += piece.size
    if chunk:
        yield chunk


def _prefix_for(cidr: netaddr.IPNetwork, size: int) -> int:
    """The longest prefix whose networks hold at most size addresses."""
    bits = 32 if cidr.version == 4 else 128
    prefix: int = cidr.prefixlen
    return max(prefix, bits - (size.bit_length() - 1))


class NmapScanner:
    """Runs nmap on chunks of validated networks and reads its XML as records."""

    def __init__(self, settings: NmapSettings, gate: NetworkGate) -> None:
        path = find_nmap(settings.nmap)
        try:
            self._scanner = nmap.PortScanner(nmap_search_path=(path,))
        except nmap.PortScannerError as exc:
            raise ProbeError(f"nmap at {path} could not be run: {exc}") from None
        self._settings = settings
        self._gate = gate

    def scan(self, networks: Sequence[netaddr.IPNetwork]) -> list[Record]:
        """Scan networks (one address family) in one nmap run and return its records."""
        for network in networks:
            # python-nmap splits the hosts string into arguments: only validated networks pass.
            if not isinstance(network, netaddr.IPNetwork):
                raise InputError(f"target {network!r} is not a network")
            self._gate.admit_network(str(network))
        hosts = " ".join(str(network) for network in networks)
        arguments = nmap_arguments(self._settings, ipv6=networks[0].version == 6)
        try:
            self._scanner.scan(
                hosts=hosts, ports=self._settings.ports, arguments=" ".join(arguments)
            )
        except nmap.PortScannerError as exc:
            raise ProbeError(f"nmap failed scanning {hosts}: {str(exc).strip()}") from None
        output = self._scanner.get_nmap_last_output()
        stream = io.BytesIO(output if isinstance(output, bytes) else output.encode())
        try:
            return list(read_nmap_xml(stream, f"nmap output for {hosts}", "scan"))
        except InputError as exc:
            raise ProbeError(str(exc)) from None
