"""Port discovery with nmap run as a child process, one chunk of addresses at a time."""

from __future__ import annotations

import queue
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Generator, Iterator, Sequence

import netaddr

from rolecall.probes.errors import InputError, ProbeError
from rolecall.probes.gate import NetworkGate
from rolecall.probes.nmap.settings import NmapSettings
from rolecall.probes.nmap.xml import read_nmap_hosts
from rolecall.probes.records import Record

INSTALL_HINT = "install it with `apt-get install nmap` (Debian/Ubuntu) or from nmap.org"
POLL_SECONDS = 0.1
HALT_SECONDS = 1.0
PORT_SCAN_TASK = "Connect Scan"


def nmap_arguments(settings: NmapSettings, ipv6: bool = False) -> list[str]:
    """The nmap options for a settings: a TCP connect scan, so no raw sockets are needed."""
    args = ["-sT", f"-T{settings.timing}", "--host-timeout", f"{settings.host_timeout}s"]
    args += ["--max-retries", str(settings.max_retries)]
    # Verbose XML lists hosts found down too, and --stats-every says how far the scan is:
    # progress moves while a group of hosts is scanned, not only when it is done.
    args += ["-v", "--stats-every", "1s"]
    if settings.service_detection:
        args.append("-sV")
    if settings.skip_host_discovery:
        args.append("-Pn")
    # Names are looked up by rolecall, off the scan's path (probes.reverse_names): nmap's own
    # lookups hold the whole scan for as long as a silent resolver takes to time out.
    args.append("-n")
    if settings.max_rate:
        args += ["--max-rate", str(settings.max_rate)]
    if ipv6:
        args.append("-6")
    return args


def port_arguments(settings: NmapSettings) -> list[str]:
    """The ports nmap scans: nmap's own most common ones (--top-ports N) or the list given."""
    if settings.top_ports:
        return ["--top-ports", str(settings.top_ports)]
    return ["-p", settings.ports]


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
    """Runs nmap on chunks of validated networks and reads its XML as it comes, host by host."""

    def __init__(self, settings: NmapSettings, gate: NetworkGate) -> None:
        self._path = find_nmap(settings.nmap)
        self._settings = settings
        self._gate = gate

    def scan(
        self,
        networks: Sequence[netaddr.IPNetwork],
        stop: Callable[[], bool],
        progress: Callable[[float], None] | None = None,
    ) -> Iterator[list[Record]]:
        """Yield each host's records as nmap finishes it; once stop() is true, stop nmap and end.

        progress, if given, hears the share (0 to 1) of the port scan done, as nmap says it.
        """
        for network in networks:
            if not isinstance(network, netaddr.IPNetwork):
                raise InputError(f"target {network!r} is not a network")
            self._gate.admit_network(str(network))
        # nmap scans one address family per run (-6 or not): chunk_networks splits them.
        if len({network.version for network in networks}) > 1:
            raise InputError("one nmap run takes IPv4 or IPv6 networks, not both")
        hosts = " ".join(str(network) for network in networks)
        command = [
            self._path,
            *nmap_arguments(self._settings, ipv6=networks[0].version == 6),
            *port_arguments(self._settings),
            *("-oX", "-"),
            *(str(network) for network in networks),
        ]
        with tempfile.TemporaryFile() as errors:
            try:
                # Its own process group: a terminal's Ctrl-C reaches rolecall, which stops
                # nmap itself and keeps the hosts nmap finished.
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=errors,
                    bufsize=0,
                    process_group=0,
                )
            except OSError as exc:
                raise ProbeError(f"nmap at {self._path} could not be run: {exc}") from None
            try:
                where = f"nmap output for {hosts}"
                failure = yield from _hosts_of(process, where, stop, progress)
                if stop():
                    return
                if process.wait() != 0 or failure is not None:
                    errors.seek(0)
                    said = " ".join(errors.read().decode(errors="replace").split())
                    raise ProbeError(f"nmap failed scanning {hosts}: {said or failure}")
            finally:
                _halt(process)


_END = object()


def _hosts_of(
    process: subprocess.Popen[bytes],
    where: str,
    stop: Callable[[], bool],
    progress: Callable[[float], None] | None,
) -> Generator[list[Record], None, InputError | None]:
    """Yield hosts read from nmap's output until it ends or stop(); return a reading error."""
    hosts: queue.Queue[object] = queue.Queue()
    stream = process.stdout
    assert stream is not None  # noqa: S101 -- stdout=PIPE above

    def heard(task: str, percent: float) -> None:
        """Pass the port scan's progress on to the loop below, as a share."""
        if task == PORT_SCAN_TASK:
            hosts.put(percent / 100.0)

    def read() -> None:
        """Put each host's records on the queue, then a reading error if any, then the end."""
        try:
            for host in read_nmap_hosts(stream, where, "scan", heard):
                hosts.put(host)
        except InputError as exc:
            hosts.put(exc)
        finally:
            hosts.put(_END)

    reader = threading.Thread(target=read, name="nmap-xml", daemon=True)
    reader.start()
    failure: InputError | None = None
    while True:
        if stop():
            _halt(process)
        try:
            item = hosts.get(timeout=POLL_SECONDS)
        except queue.Empty:
            continue
        if item is _END:
            break
        if isinstance(item, InputError):
            failure = item
        elif isinstance(item, float):
            if progress is not None:
                progress(item)
        elif isinstance(item, list):
            yield item
    reader.join()
    # Output cut short by a stop is expected to end mid-document.
    return None if stop() else failure


def _halt(process: subprocess.Popen[bytes]) -> None:
    """End nmap if it still runs: asked first, then killed."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=HALT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
