"""A lab network with a real round-trip time, for benchmarks run as root in their own netns.

This kernel has no netem (`tc qdisc ... netem` says "unknown qdisc"), so the delay is
made in user space: the lab's addresses live in a second network namespace, joined to
the caller's by two TUN devices, and one process carries every packet between them
after `delay` seconds each way. Whatever the lab answers (SYN-ACK, RST, ICMP echo) is
its own kernel's answer; only the time on the wire is added. Nothing leaves the machine:
neither namespace has any other link than its loopback and its TUN device.
"""

from __future__ import annotations

import collections
import ctypes
import fcntl
import os
import select
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress

import netaddr

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
NEAR = "10.8.0.1"
"""The caller's address on its TUN device: where the lab's answers go."""
MTU = 1500


def _tun(name: str) -> int:
    """A TUN device called name in this process's network namespace, its descriptor."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def _ip(*args: str) -> None:
    """Run `ip ARGS` in this process's network namespace."""
    subprocess.run(["ip", *args], check=True)


def _listeners(services: Sequence[tuple[str, int]]) -> list[socket.socket]:
    """Listening sockets, non-blocking, one per (address, port)."""
    opened = []
    for address, port in services:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(1024)
        sock.setblocking(False)
        opened.append(sock)
    return opened


def _carry(near: int, far: int, listeners: list[socket.socket], delay: float) -> None:
    """Carry packets both ways after delay, and accept and close what the lab's ports take."""
    waiting: dict[int, collections.deque[tuple[float, bytes]]] = {
        near: collections.deque(),
        far: collections.deque(),
    }
    other = {near: far, far: near}
    by_fd = {sock.fileno(): sock for sock in listeners}
    poller = select.epoll()
    for fd in (near, far, *by_fd):
        poller.register(fd, select.EPOLLIN)
    while True:
        now = time.monotonic()
        for source, queue in waiting.items():
            while queue and queue[0][0] <= now:
                # A full TUN queue drops the packet, as a congested link would.
                with suppress(BlockingIOError):
                    os.write(other[source], queue.popleft()[1])
        due = [queue[0][0] for queue in waiting.values() if queue]
        timeout = max(0.0, min(due) - time.monotonic()) if due else 1.0
        for fd, _ in poller.poll(timeout):
            if fd in waiting:
                arrived = time.monotonic() + delay
                while True:
                    try:
                        waiting[fd].append((arrived, os.read(fd, 65535)))
                    except BlockingIOError:
                        break
                continue
            while True:
                try:
                    conn, _ = by_fd[fd].accept()
                except BlockingIOError:
                    break
                conn.close()


def _serve_lab(
    near: int, lab: netaddr.IPNetwork, services: Sequence[tuple[str, int]], delay: float, ready: int
) -> None:
    """In a new network namespace: the lab's addresses, its services, and the delay line."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
    _ip("link", "set", "lo", "up")
    far = _tun("rcfar")
    _ip("link", "set", "rcfar", "mtu", str(MTU), "up")
    # Every lab address is this namespace's own, as 127.0.0.0/8 is on loopback.
    _ip("route", "add", "local", str(lab), "dev", "lo")
    _ip("route", "add", f"{NEAR}/32", "dev", "rcfar")
    listeners = _listeners(services)
    os.write(ready, b"ready")
    os.close(ready)
    _carry(near, far, listeners, delay)


@contextmanager
def delayed_lab(
    lab: netaddr.IPNetwork, services: Sequence[tuple[str, int]], delay: float
) -> Iterator[None]:
    """A lab network (its services listening) reachable from here after delay each way."""
    near = _tun("rcnear")
    _ip("link", "set", "rcnear", "mtu", str(MTU), "up")
    _ip("address", "add", f"{NEAR}/32", "dev", "rcnear")
    _ip("route", "add", str(lab), "dev", "rcnear", "src", NEAR)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the lab's process
        os.close(read_end)
        try:
            _serve_lab(near, lab, services, delay, write_end)
        finally:
            os._exit(1)
    os.close(write_end)
    os.close(near)
    try:
        if os.read(read_end, 5) != b"ready":
            raise RuntimeError("the delayed lab did not start")
        os.close(read_end)
        yield
    finally:
        os.kill(child, signal.SIGTERM)
        os.waitpid(child, 0)


def round_trip(address: str, port: int, times: int = 9) -> float:
    """The median seconds of a TCP handshake with address:port (a SYN and its answer)."""
    taken = []
    for _ in range(times):
        start = time.perf_counter()
        with socket.socket() as sock:
            sock.settimeout(5)
            with suppress(ConnectionRefusedError):
                sock.connect((address, port))
        taken.append(time.perf_counter() - start)
    return sorted(taken)[len(taken) // 2]
