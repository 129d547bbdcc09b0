"""Which process owns a run, named so that another process can later prove it is gone.

A pid alone proves nothing: pids are reused, other machines have the same pids, and
processes in another pid namespace (a container) see other pids. So a run records the
host name, the pid, and the kernel's identity of the process: the machine id, the boot
id, the pid namespace and the process's start time in clock ticks since boot. Another
process judges an owner gone only when it can see it is: same host and same boot and pid
namespace, and the pid is dead, a zombie, or a newer process; or same host and machine
and a later boot (the machine restarted since). Anything else, e.g. a run of another
host, is left alone: it may well be running.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
ENDED_STATES = frozenset({"Z", "X"})
"""A zombie (ended, not yet reaped by its parent) or a dead process runs nothing more."""


@dataclass(frozen=True)
class Owner:
    """A process as a run records it: host, pid, and "machine boot pid-namespace start"."""

    host: str
    pid: int
    process: str


@dataclass(frozen=True)
class _Identity:
    """The parts of Owner.process, "" where the system does not tell."""

    machine: str
    boot: str
    namespace: str
    start: str

    @classmethod
    def parse(cls, text: str) -> _Identity:
        """Read an Owner.process text (missing parts are "")."""
        parts = [*text.split(" "), "", "", "", ""][:4]
        return cls(*(part if part != "-" else "" for part in parts))

    def text(self) -> str:
        """The Owner.process text ("-" for a part the system does not tell)."""
        return " ".join(
            part or "-" for part in (self.machine, self.boot, self.namespace, self.start)
        )


def _read(path: Path) -> str:
    """A small system file's text, stripped ("" if it cannot be read)."""
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return ""


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start ticks) of a live or zombie process, from /proc/PID/stat; None if none."""
    text = _read(PROC / str(pid) / "stat")
    # The command name (field 2) is in parentheses and may hold spaces and ")".
    fields = text.rpartition(")")[2].split()
    if len(fields) < 20:
        return None
    return fields[0], fields[19]


def _namespace() -> str:
    """This process's pid namespace, e.g. "pid:[4026531836]" ("" off Linux)."""
    try:
        return os.readlink(PROC / "self" / "ns" / "pid")
    except OSError:
        return ""


def this_process() -> Owner:
    """The calling process as an owner of runs."""
    pid = os.getpid()
    stat = _stat(pid)
    identity = _Identity(
        machine=_read(Path("/etc/machine-id")),
        boot=_read(PROC / "sys" / "kernel" / "random" / "boot_id"),
        namespace=_namespace(),
        start=stat[1] if stat else "",
    )
    return Owner(socket.gethostname(), pid, identity.text())


def is_gone(owner: Owner, here: Owner) -> bool:
    """Whether owner provably runs no more, as seen from the process here."""
    if owner.host != here.host:
        return False
    theirs, ours = _Identity.parse(owner.process), _Identity.parse(here.process)
    if not theirs.boot or not ours.boot:
        return False
    if theirs.boot != ours.boot:
        # Another boot of the same machine: every process of the earlier one ended.
        return bool(theirs.machine) and theirs.machine == ours.machine
    if not theirs.namespace or theirs.namespace != ours.namespace:
        return False
    if owner.pid <= 0:
        return False
    try:
        os.kill(owner.pid, 0)  # signal 0: only asks whether the pid exists
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, as another user's process
    # /proc may hide other users' processes (hidepid): then nothing is proven.
    stat = _stat(owner.pid)
    if stat is None:
        return False
    state, start = stat
    return state in ENDED_STATES or (bool(theirs.start) and start != theirs.start)
