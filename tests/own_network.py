"""The suite's own network: a network namespace with loopback only, and a resolver inside it.

Every server a test starts, every scan and every capture happens there: two runs of the
suite on one machine cannot take each other's addresses, other listeners on the machine's
loopback are never seen, and no packet can leave the machine. The machine's resolver is
out of reach from inside, and nmap waits about 13 s for it on every reverse lookup, so a
dnsmasq without upstreams answers every name on 127.0.0.1 at once (private addresses:
no such name), seen through a resolv.conf bound over the machine's in a mount namespace
of the suite's own.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
RESOLVER = "127.0.0.1"
RESOLV_CONF = Path("/etc/resolv.conf")


class NamespaceError(Exception):
    """The suite's namespaces could not be made; the message says why."""


def enter() -> subprocess.Popen[bytes] | None:
    """Move this process (and all it starts later) into its own network; the resolver's process.

    Call before any thread starts: a namespace is a thread's, inherited by what it starts.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET | CLONE_NEWNS) != 0:
        raise NamespaceError(os.strerror(ctypes.get_errno()))
    # Mounts made from here on stay in this namespace, never reach the machine's.
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    return _start_resolver()


def _start_resolver() -> subprocess.Popen[bytes] | None:
    """dnsmasq on 127.0.0.1:53 as the only resolver; None where dnsmasq is not installed."""
    dnsmasq = shutil.which("dnsmasq") or shutil.which("dnsmasq", path="/usr/sbin:/sbin")
    if dnsmasq is None:
        return None
    conf = Path(tempfile.mkdtemp(prefix="rolecall-tests-")) / "resolv.conf"
    conf.write_text(f"nameserver {RESOLVER}\n", encoding="ascii")
    subprocess.run(["mount", "--bind", str(conf), str(RESOLV_CONF)], check=True)
    arguments = ["--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts"]
    arguments += [f"--listen-address={RESOLVER}", "--bind-interfaces", "--port=53"]
    arguments += ["--bogus-priv", "--pid-file=", "--user=root"]
    server = subprocess.Popen([dnsmasq, *arguments])
    _wait_for_answers(server)
    return server


def _wait_for_answers(server: subprocess.Popen[bytes], seconds: float = 30.0) -> None:
    """Return once the resolver answers a query; NamespaceError if it never does."""
    # One query: id 1, recursion desired, "localhost." type A class IN.
    query = struct.pack("!6H", 1, 0x0100, 1, 0, 0, 0) + b"\x09localhost\x00" + b"\x00\x01\x00\x01"
    deadline = time.monotonic() + seconds
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(0.2)
        while time.monotonic() < deadline and server.poll() is None:
            try:
                probe.sendto(query, (RESOLVER, 53))
                probe.recvfrom(512)
            except OSError:
                continue
            return
    if server.poll() is not None:
        raise NamespaceError(f"dnsmasq exited with status {server.returncode} before answering")
    server.kill()
    raise NamespaceError(f"dnsmasq did not answer on {RESOLVER}:53 within {seconds:.0f} s")


def stop(server: subprocess.Popen[bytes]) -> None:
    """Stop the resolver and reap it."""
    server.terminate()
    try:
        server.wait(timeout=5)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
