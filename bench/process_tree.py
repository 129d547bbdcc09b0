"""Running a command the way a benchmark measures it: wall and CPU time, and peak memory.

Peak memory is given two ways: the kernel's figure for the largest single
process (``ru_maxrss``), and the largest sum over the process and all its
descendants seen while sampling every 20 ms. The sum is the honest figure for a
tool that works in more than one process; it counts pages the processes share
once for each, so it errs high.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Measured:
    """What one run cost."""

    wall: float  # seconds
    cpu: float  # user + system seconds of the process and its descendants
    largest_rss: int  # KiB, the largest single process
    tree_rss: int  # KiB, the largest sampled sum over the process tree
    status: int  # exit status


def run_measured(argv: list[str], stdout: Path, env: dict[str, str] | None = None) -> Measured:
    """Run ``argv`` with its output written to ``stdout``; return what it cost."""
    actions = [(os.POSIX_SPAWN_OPEN, 1, str(stdout), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)]
    started = time.perf_counter()
    pid = os.posix_spawnp(argv[0], argv, env or dict(os.environ), file_actions=actions)
    sampler = _TreeRss(pid)
    sampler.start()
    _pid, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    sampler.done.set()
    sampler.join()
    return Measured(
        wall,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss,
        max(sampler.peak, usage.ru_maxrss),
        os.waitstatus_to_exitcode(status),
    )


class _TreeRss(threading.Thread):
    """Samples the summed RSS of a process and its descendants until told to stop."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        """Sample every 20 ms, keeping the largest sum (KiB)."""
        while not self.done.wait(0.02):
            self.peak = max(self.peak, sum(map(_rss_kib, _tree(self.pid))))


def _tree(pid: int) -> list[int]:
    """A process and all its descendants (those still running)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(child) for child in (task / "children").read_text().split())
        except OSError:
            continue  # it ended meanwhile
    return found


def _rss_kib(pid: int) -> int:
    """A process's resident set size in KiB (0 if it has ended)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
