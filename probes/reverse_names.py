"""Reverse DNS off the scan's critical path: lookups in background threads, waited for briefly."""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from rolecall.probes.records import HostName

WORKERS = 16
NO_NAME = (socket.EAI_NONAME, 1, 4)  # getaddrinfo's "no such name"; h_errno HOST_NOT_FOUND, NO_DATA
POLL_SECONDS = 0.1


@dataclass
class NameLookups:
    """What reverse lookups found: names, and how many addresses got no answer in time."""

    names: list[HostName]
    unresolved: int


class ReverseLookups:
    """Looks addresses up in daemon threads, so a resolver that never answers holds nothing."""

    def __init__(self, source: str) -> None:
        self._source = source
        self._pending: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self._asked: set[str] = set()
        self._answered: set[str] = set()
        self._done: set[str] = set()
        self._names: list[HostName] = []
        self._workers: list[threading.Thread] = []

    def submit(self, address: str) -> None:
        """Start looking address up (once), in the background."""
        with self._lock:
            if address in self._asked:
                return
            self._asked.add(address)
            if len(self._workers) < WORKERS:
                # Daemon threads: a lookup stuck on a silent resolver must not keep rolecall alive.
                worker = threading.Thread(target=self._work, name="reverse-dns", daemon=True)
                self._workers.append(worker)
                worker.start()
        self._pending.put(address)

    def collect(self, seconds: float, stop: Callable[[], bool]) -> NameLookups:
        """Wait at most seconds (less if stop() turns true), return what was answered, and end."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not stop():
            with self._lock:
                if self._done >= self._asked:
                    break
            time.sleep(POLL_SECONDS)
        with self._lock:
            found = NameLookups(list(self._names), len(self._asked - self._answered))
        # Lookups not started are dropped; idle workers end now, busy ones after their
        # lookup: a daemon's scans leak no threads.
        with contextlib.suppress(queue.Empty):
            while True:
                self._pending.get_nowait()
        for _worker in self._workers:
            self._pending.put(None)
        return found

    def _work(self) -> None:
        """Look up addresses from the queue until told to end."""
        while (address := self._pending.get()) is not None:
            name = _lookup(address)
            with self._lock:
                self._done.add(address)
                if name is not None:
                    self._answered.add(address)
                if name:
                    self._names.append(HostName(address, name, self._source, datetime.now(UTC)))


def _lookup(address: str) -> str | None:
    """The address's name; "" when it has none; None when the resolver gave no answer."""
    try:
        name, _aliases, _addresses = socket.gethostbyaddr(address)
    except (socket.herror, socket.gaierror) as exc:
        return "" if exc.errno in NO_NAME else None
    except OSError:
        return None
    return name
