"""The demo's capture: tcpdump on loopback when root, else the recorded one, moved to the lab."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import dpkt
import netaddr

from rolecall.orchestrator.demo.layout import SOCKS_PORT
from rolecall.orchestrator.errors import RunError

RECORDED_NETWORK = "127.0.60.0/24"
RECORDED_NAME = "demo.pcap"


def can_capture() -> bool:
    """Whether a live loopback capture is possible: root and tcpdump installed."""
    return os.geteuid() == 0 and shutil.which("tcpdump") is not None


@contextmanager
def live_capture(path: Path, network: str) -> Iterator[Path]:
    """Record the lab network's loopback traffic with tcpdump while the block runs."""
    binary = shutil.which("tcpdump")
    if binary is None:
        raise RunError("tcpdump is not installed (apt-get install tcpdump)")
    # A 32 MiB ring: with whole loopback frames (up to 256 KiB each) the default 2 MiB
    # holds a handful, and a busy machine dropped packets of the lab's own sessions.
    args = [binary, "-i", "lo", "-U", "--immediate-mode", "-n", "-s", "0", "-B", "32768"]
    proc = subprocess.Popen(
        [*args, "-w", str(path), "net", network],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None  # noqa: S101 - Popen was given stderr=PIPE
        # tcpdump says "listening on lo" once packets are being recorded.
        line = proc.stderr.readline()
        if b"listening on" not in line:
            raise RunError(f"tcpdump could not capture on lo: {line.decode(errors='replace')}")
        yield path
        time.sleep(0.3)  # the last packets of the block reach the file
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


def _moved(address: bytes, source: netaddr.IPNetwork, target: netaddr.IPNetwork) -> bytes:
    """An IPv4 address of the source network moved to the same place in the target network."""
    value = netaddr.IPAddress(int.from_bytes(address, "big"))
    if value not in source:
        return address
    offset = int(value) - int(source.network)
    return int(target.network + offset).to_bytes(4, "big")


def replay_recorded(path: Path, network: str, end: float | None = None) -> Path:
    """Write the recorded capture to path, moved into network and shifted to end now."""
    source, target = netaddr.IPNetwork(RECORDED_NETWORK), netaddr.IPNetwork(network)
    tmp = path.with_suffix(".tmp")
    with (
        tmp.open("wb") as out,
        resources.as_file(
            resources.files("rolecall.orchestrator.demo") / "data" / RECORDED_NAME
        ) as recorded,
        recorded.open("rb") as handle,
    ):
        reader = dpkt.pcap.Reader(handle)
        packets = list(reader)
        shift = (time.time() if end is None else end) - packets[-1][0] if packets else 0.0
        writer = dpkt.pcap.Writer(out, linktype=reader.datalink())
        for ts, frame in packets:
            writer.writepkt(_move_frame(frame, source, target), ts=ts + shift)
    tmp.replace(path)
    return path


def _move_frame(frame: bytes, source: netaddr.IPNetwork, target: netaddr.IPNetwork) -> bytes:
    """An Ethernet frame with its IPv4 addresses moved and its checksums recomputed."""
    eth = dpkt.ethernet.Ethernet(frame)
    ip = eth.data
    if not isinstance(ip, dpkt.ip.IP):
        return frame
    ip.src = _moved(ip.src, source, target)
    ip.dst = _moved(ip.dst, source, target)
    ip.sum = 0
    if isinstance(ip.data, dpkt.tcp.TCP | dpkt.udp.UDP):
        ip.data.sum = 0
    if isinstance(ip.data, dpkt.tcp.TCP) and ip.data.dport == SOCKS_PORT:
        ip.data.data = _move_socks_request(ip.data.data, source, target)
    return bytes(eth)


def _move_socks_request(
    payload: bytes, source: netaddr.IPNetwork, target: netaddr.IPNetwork
) -> bytes:
    """A SOCKS5 CONNECT to an IPv4 address with the address moved (same length, same seq)."""
    if len(payload) != 10 or not payload.startswith(b"\x05\x01\x00\x01"):
        return payload
    return payload[:4] + _moved(payload[4:8], source, target) + payload[8:]
