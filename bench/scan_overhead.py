"""Wall time of `rolecall scan subnet` against bare nmap with the same arguments, one run.

Both scan the same loopback network, where this script opened listeners, with
nmap's TCP connect scan; the ratio is what rolecall's orchestration (start-up,
chunking, storing every result) costs over nmap itself. Target: <= 1.15.

    python bench/scan_overhead.py [--network 127.0.90.0/23] [--ports 1-5000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import netaddr

from rolecall.probes.nmap.scan import nmap_arguments
from rolecall.probes.nmap.settings import NmapSettings

TARGET_RATIO = 1.15


def open_listeners(network: netaddr.IPNetwork, ports: list[int]) -> list[socket.socket]:
    """Listen on a few ports of every 16th address so the scan finds something to store."""
    sockets = []
    for index, address in enumerate(list(network)[1::16]):
        for port in ports[index % 3 :: 997]:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((str(address), port))
            sock.listen(128)
            sockets.append(sock)
    return sockets


def timed(command: list[str]) -> float:
    """Run a command to completion and return its wall time in seconds."""
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    """Run both tools in alternation and print their times and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="127.0.90.0/23")
    parser.add_argument("--ports", default="1-5000")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    network = netaddr.IPNetwork(args.network)
    if not network.ip.is_loopback():
        parser.error("benchmarks run on loopback networks only")
    low, _, high = args.ports.partition("-")
    listeners = open_listeners(network, list(range(int(low), int(high or low) + 1)))

    settings = NmapSettings(ports=args.ports, resolve_names=False)
    nmap_cmd = ["nmap", "-oX", "-", str(network), "-p", args.ports, *nmap_arguments(settings)]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "rolecall.toml"
        config.write_text(f'[scan]\nports = "{args.ports}"\nresolve_names = false\n')
        nmap_times, rolecall_times = [], []
        for round_ in range(args.rounds):
            db = Path(tmp) / f"bench-{round_}.db"
            rolecall_cmd = ["rolecall", "--config", str(config), "--db", str(db), "-q"]
            nmap_times.append(timed(nmap_cmd))
            # Port discovery only, like the nmap it is compared with: the active probes are
            # measured against nmap -sV and its scripts by bench/probe_vs_nmap.py.
            scan = [*rolecall_cmd, "scan", "subnet", str(network), "--probes", "none"]
            rolecall_times.append(timed(scan))
    for sock in listeners:
        sock.close()

    nmap_s, rolecall_s = statistics.median(nmap_times), statistics.median(rolecall_times)
    ratio = rolecall_s / nmap_s
    print(
        f"targets: {network} ({network.size} addresses), ports {args.ports}, {len(listeners)} open"
    )
    print(f"nmap (bare):        {nmap_s:8.2f} s  (median of {args.rounds})")
    print(f"rolecall scan:      {rolecall_s:8.2f} s  (median of {args.rounds})")
    verdict = "meets" if ratio <= TARGET_RATIO else "MISSES"
    print(f"ratio rolecall/nmap: {ratio:.3f}  ({verdict} the target <= {TARGET_RATIO})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
