"""Running a command the way a benchmark measures it: wall and CPU time, and peak memory.

Peak memory is given two ways: the kernel's figure for the largest single
process (``ru_maxrss``), and the largest sum over the command's process and all
its descendants seen while sampling every 20 ms. The sum is the honest figure for a
tool that works in more than one process; it counts pages the processes share
once for each, so it errs high.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
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


# A small interpreter runs the command and reports its children's usage. The kernel
# counts a process's peak RSS from its parent's at spawn time, so the benchmark,
# which may hold a large capture in memory, must not be that parent.
_PROBE = """
import json, os, resource, subprocess, sys, time
started = time.perf_counter()
with open(sys.argv[1], "wb") as out:
    code = subprocess.run(sys.argv[2:], stdout=out).returncode
wall = time.perf_counter() - started
use = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps([wall, use.ru_utime + use.ru_stime, use.ru_maxrss, code]))
"""


def run_measured(
    argv: list[str], stdout: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Measured:
    """Run ``argv`` in ``cwd`` with its output written to ``stdout``; return what it cost."""
    probe = subprocess.Popen(
        [sys.executable, "-c", _PROBE, str(stdout), *argv],
        stdout=subprocess.PIPE,
        env=env,
        cwd=cwd,
        text=True,
    )
    sampler = _TreeRss(probe.pid)
    sampler.start()
    report, _ = probe.communicate()
    sampler.done.set()
    sampler.join()
    if probe.returncode != 0 or not report:
        raise SystemExit(f"cannot run {argv[0]}: the measuring process failed")
    wall, cpu, largest, status = json.loads(report)
    return Measured(wall, cpu, largest, max(sampler.peak, largest), status)


class _TreeRss(threading.Thread):
    """Samples the summed RSS of a process's descendants until told to stop."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        """Sample every 20 ms, keeping the largest sum (KiB) over the process's descendants."""
        while not self.done.wait(0.02):
            self.peak = max(self.peak, sum(map(_rss_kib, _tree(self.pid)[1:])))


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
