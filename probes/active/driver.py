"""The active-probe driver: what every open TCP port really speaks, found safely in bounded time.

Every target passes ``TargetGate.admit`` before any connection; a refused one
raises ``OutOfScopeError`` before a single packet is sent to anyone.

Each port first gets a moment to greet (SMTP, FTP, SSH, POP3, IMAP speak first);
a silent port then gets the client-first probes (SOCKS, HTTP CONNECT then HTTP,
HTTPS, DNS, implicit-TLS SMTP) side by side, the first to recognise it winning; a
bare TLS service (a handshake, then nothing HTTP) counts only if no other probe
recognises the port, so SMTP behind a TLS handshake is SMTP on any port.

Observation kinds (source "probe"; ``value`` the conclusion, ``detail`` JSON evidence):
``protocol`` (socks5, socks4, http-proxy, smtp, http, https, tls, dns, ssh, ftp, pop3,
imap), ``http-proxy-relay`` (relayed to canary, 200 without relay, refused,
inconclusive), ``http-proxy-auth`` (the Proxy-Authenticate challenge),
``socks5-auth`` (no-auth, username/password, no-acceptable-method, method 0xNN),
``socks5-relay``/``socks4-relay`` (relayed to canary, handshake-open, relay unverified,
refused), ``smtp-extensions`` (EHLO keywords, sorted), ``smtp-starttls`` (ok, failed),
``smtp-auth`` (mechanisms), ``smtp-plaintext-auth`` (mechanisms offered before TLS),
``smtp-relay`` (open-relay, relay-refused, auth-required, inconclusive),
``tls-certificate`` (subject), ``ftp-anonymous`` (allowed, refused) and
``unclassified`` (unrecognised reply, or why nothing was recognised). The names a
TLS certificate is for (CN and DNS SANs, well-formed only) become HostName records.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from rolecall.probes.active.canary import MAX_CONNECTIONS, Canary, local_address_toward
from rolecall.probes.active.connection import (
    CONNECT_PACER,
    NETWORK_ERRORS,
    ConnectPacer,
    ProbeConnection,
    ProbeResult,
    evidence,
    observation,
    show_bytes,
)
from rolecall.probes.active.http_proxy import probe_http_proxy
from rolecall.probes.active.services import (
    banner_records,
    greeting_protocol,
    probe_dns,
    probe_ftp_anonymous,
    probe_http,
)
from rolecall.probes.active.settings import ProbeSettings
from rolecall.probes.active.smtp import converse, is_smtp_banner, probe_smtp
from rolecall.probes.active.socks import probe_socks4, probe_socks5
from rolecall.probes.errors import InputError
from rolecall.probes.gate import TargetGate
from rolecall.probes.records import Record

IMPLICIT_TLS_SMTP: Final = frozenset({465})
TLS_FIRST_PORTS: Final = frozenset({443, 465, 636, 853, 993, 995, 8443})
DNS_PORTS: Final = frozenset({53})
_SHOWN_BYTES: Final = 1024
STOP_POLL_SECONDS: Final = 0.1

Step = Callable[[], Awaitable[ProbeResult]]


class CanaryPool:
    """The canaries of one run, one per local address, opened on first need."""

    def __init__(self, settings: ProbeSettings) -> None:
        """Prepare an empty pool; nothing listens until a SOCKS or HTTP CONNECT probe asks."""
        self._settings = settings
        self._canaries: dict[str, Canary | None] = {}
        self._lock = asyncio.Lock()

    async def for_target(self, address: str) -> Canary | None:
        """Return the canary reachable from ``address`` (None if none could be opened)."""
        try:
            bind = self._settings.canary_bind or local_address_toward(address)
        except OSError:
            return None
        async with self._lock:
            if bind not in self._canaries:
                # Every probe of a run may be relaying to it at once: room for all of them.
                canary = Canary(
                    bind,
                    self._settings.read_timeout,
                    max(MAX_CONNECTIONS, 2 * self._settings.concurrency),
                )
                try:
                    await canary.start()
                except OSError:
                    self._canaries[bind] = None
                else:
                    self._canaries[bind] = canary
            return self._canaries[bind]

    async def close(self) -> None:
        """Close every canary opened."""
        for canary in self._canaries.values():
            if canary is not None:
                await canary.close()


@dataclass(slots=True)
class PortWork:
    """One port's probing: what was tried, what came back, what was learnt."""

    address: str
    port: int
    hint: str
    tried: list[str] = field(default_factory=list)
    seen: bytearray = field(default_factory=bytearray)
    records: list[Record] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    fallback: list[Record] = field(default_factory=list)
    done: bool = False

    def take(self, result: ProbeResult) -> bool:
        """Keep a result's records and return True if it recognised the port.

        A TLS-only result (a handshake, then nothing HTTP) is held back: an SMTP
        server behind the same handshake may answer another probe, and wins.
        """
        if result.matched and not result.fallback:
            self.records += result.records
            return True
        if result.matched and not self.fallback:
            self.fallback = result.records
        self.keep_seen(result.seen)
        return False

    def keep_seen(self, data: bytes) -> None:
        """Keep unrecognised bytes as evidence, up to a small cap."""
        self.seen += data[: max(_SHOWN_BYTES - len(self.seen), 0)]

    def unclassified(self, why: str) -> Record:
        """Return the observation for a port no probe recognised, with the bytes seen."""
        value = "unrecognised reply" if self.seen else why
        detail = evidence(
            reason=why,
            tried=self.tried,
            errors=self.errors,
            bytes=show_bytes(bytes(self.seen)),
            hex=bytes(self.seen[:256]).hex(),
            nmap_name=self.hint,
        )
        return observation(self.address, self.port, "unclassified", value, detail)


async def _greeting(work: PortWork, settings: ProbeSettings) -> ProbeResult | None:
    """Listen for a server that speaks first; return its result, or None if it stays silent."""
    work.tried.append("greeting")
    try:
        conn = await ProbeConnection.open(work.address, work.port, settings)
    except NETWORK_ERRORS:
        return ProbeResult()
    try:
        try:
            first = await conn.wait_for_data(settings.banner_timeout)
        except TimeoutError:
            return None
        if not first:
            return ProbeResult()
        try:
            first = await conn.wait_for_line(settings.read_timeout)
        except NETWORK_ERRORS:
            first = bytes(conn.seen)
        return await _greeted(conn, work, first, settings)
    finally:
        await conn.close()


async def _greeted(
    conn: ProbeConnection, work: PortWork, first: bytes, settings: ProbeSettings
) -> ProbeResult:
    """Classify a greeting and run the matching probe on the same connection.

    A greeting is recognised whatever ``settings.probes`` says; only the active
    steps after it (the SMTP session, the anonymous FTP login) depend on it.
    """
    address, port = work.address, work.port
    protocol = greeting_protocol(first)
    if not protocol and first[:3] in (b"220", b"421", b"554"):
        try:
            banner = await conn.read_reply()
        except NETWORK_ERRORS:
            return ProbeResult(seen=bytes(conn.seen))
        if not is_smtp_banner(banner):
            return ProbeResult(seen=bytes(conn.seen))
        if not settings.runs("smtp"):
            return banner_records(address, port, "smtp", "\n".join(banner))
        return await converse(address, port, conn, banner, settings, implicit_tls=False)
    if not protocol:
        return ProbeResult(seen=first)
    text = first.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", errors="replace")
    result = banner_records(address, port, protocol, text)
    if protocol == "ftp" and settings.ftp_anonymous and settings.runs("ftp"):
        with contextlib.suppress(*NETWORK_ERRORS):
            await conn.read_reply()
        result.records += (await probe_ftp_anonymous(conn, address, port, settings)).records
    return result


def _client_first_steps(
    work: PortWork, settings: ProbeSettings, canaries: CanaryPool
) -> list[tuple[str, Step]]:
    """Return the probes for a silent port, the nmap hint's guess first."""
    address, port = work.address, work.port

    async def socks() -> ProbeResult:
        """Run SOCKS5 then SOCKS4 and merge what both found."""
        canary = await canaries.for_target(address)
        five = await probe_socks5(address, port, settings, canary)
        four = await probe_socks4(address, port, settings, canary)
        return ProbeResult(records=five.records + four.records, seen=five.seen + four.seen)

    async def web() -> ProbeResult:
        """Ask CONNECT to the canary first; a port that is no HTTP proxy gets HEAD / next.

        A proxy answers HEAD / too (with its own error page); recording that as a web
        server would claim what the port is not, so a proxy's port stops here.
        """
        proxy = await probe_http_proxy(address, port, settings, await canaries.for_target(address))
        if proxy.matched:
            return proxy
        plain = await probe_http(address, port, settings, tls=False)
        return plain if plain.matched else ProbeResult(seen=proxy.seen or plain.seen)

    steps: list[tuple[str, Step]] = []
    if settings.runs("socks"):
        steps.append(("socks", socks))
    if settings.runs("web"):
        steps.append(("http", web))
        steps.append(("https", lambda: probe_http(address, port, settings, tls=True)))
    if settings.runs("dns"):
        steps.append(("dns", lambda: probe_dns(address, port, settings)))
    if settings.runs("smtp"):
        steps.append(("smtps", lambda: probe_smtp(address, port, settings, implicit_tls=True)))
    return sorted(steps, key=lambda step: _hint_rank(step[0], work))


def _hint_rank(name: str, work: PortWork) -> int:
    """Rank a probe 0 when the port number or the nmap name suggests it, else 1."""
    hint, port = work.hint.lower(), work.port
    suggested = {
        "socks": "socks" in hint or port in (1080, 9050, 9150),
        "http": "http" in hint and "https" not in hint and "ssl" not in hint,
        "https": "https" in hint
        or "ssl" in hint
        or (port in TLS_FIRST_PORTS and port not in IMPLICIT_TLS_SMTP),
        "dns": "domain" in hint or port in DNS_PORTS,
        "smtps": "smtps" in hint or "submissions" in hint or port in IMPLICIT_TLS_SMTP,
    }
    return 0 if suggested.get(name) else 1


async def _probe_port(work: PortWork, settings: ProbeSettings, canaries: CanaryPool) -> None:
    """Find what one port speaks; store the records on ``work``."""
    steps = _client_first_steps(work, settings, canaries)
    first_is_tls = work.port in TLS_FIRST_PORTS or work.port in DNS_PORTS
    if first_is_tls and steps and _hint_rank(steps[0][0], work) == 0:
        # A TLS-first or DNS port stays silent: skip the greeting wait.
        name, step = steps.pop(0)
        if await _run_step(work, name, step):
            return
    greeted = await _greeting(work, settings)
    if greeted is not None:
        if greeted.matched:
            work.records += greeted.records
            return
        work.keep_seen(greeted.seen)
        if work.seen:
            work.records.append(work.unclassified("unrecognised greeting"))
            return
    # Each probe of a silent port waits for its own reply: run them side by side, not in
    # series, and stop the others as soon as one recognises the port.
    work.tried += [name for name, _ in steps]
    tasks = [asyncio.ensure_future(_guarded(work, step)) for _, step in steps]
    try:
        for next_done in asyncio.as_completed(tasks):
            if work.take(await next_done):
                return
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if work.fallback:
        work.records += work.fallback
        return
    work.records.append(work.unclassified("no probe recognised a reply"))


async def _guarded(work: PortWork, step: Step) -> ProbeResult:
    """Run a probe step; a parser tripping on hostile bytes becomes evidence, not a crash."""
    try:
        return await step()
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        # Deliberately broad: one odd peer must not end the whole scan.
        work.errors.append(f"{type(exc).__name__}: {exc}")
        return ProbeResult()


async def _run_step(work: PortWork, name: str, step: Step) -> bool:
    """Run one probe step; keep its records and return True if it recognised the port."""
    work.tried.append(name)
    return work.take(await _guarded(work, step))


@dataclass(frozen=True, slots=True)
class RunContext:
    """What every host's probing in one run shares."""

    settings: ProbeSettings
    canaries: CanaryPool
    semaphore: asyncio.Semaphore
    hints: Mapping[tuple[str, int], str]


async def _probe_host(address: str, ports: list[int], run: RunContext) -> list[Record]:
    """Probe one host's ports concurrently within the host's time budget."""
    settings, semaphore = run.settings, run.semaphore
    works = [PortWork(address, port, run.hints.get((address, port), "")) for port in ports]
    deadline: list[float] = []

    async def one(work: PortWork) -> None:
        """Probe one port under the semaphore and the host deadline (set at first start)."""
        async with semaphore:
            if not deadline:
                deadline.append(asyncio.get_running_loop().time() + settings.host_budget)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline[0]):
                    await _probe_port(work, settings, run.canaries)
                    work.done = True

    await asyncio.gather(*(one(work) for work in works))
    records: list[Record] = []
    for work in works:
        records += work.records
        if not work.done:
            records.append(work.unclassified("host time budget exhausted"))
    return records


def _group_targets(targets: Sequence[tuple[str, int]], gate: TargetGate) -> dict[str, list[int]]:
    """Admit every target through the gate first, then group ports by address (deduplicated)."""
    for address, port in targets:
        if not 0 < port < 65536:
            raise InputError(f"target {address} port {port} is not a TCP port number (1-65535).")
        gate.admit(address)
    hosts: dict[str, list[int]] = {}
    for address, port in targets:
        ports = hosts.setdefault(address, [])
        if port not in ports:
            ports.append(port)
    return hosts


async def probe_services(
    targets: Sequence[tuple[str, int]],
    gate: TargetGate,
    settings: ProbeSettings,
    nmap_names: Mapping[tuple[str, int], str] | None = None,
) -> list[Record]:
    """Probe every (address, open TCP port); return Observations and Services for each port."""
    hosts = _group_targets(targets, gate)
    pacing = CONNECT_PACER.set(ConnectPacer(settings.connect_rate))
    canaries = CanaryPool(settings)
    run = RunContext(settings, canaries, asyncio.Semaphore(settings.concurrency), nmap_names or {})
    try:
        per_host = await asyncio.gather(
            *(_probe_host(address, ports, run) for address, ports in hosts.items())
        )
    finally:
        await canaries.close()
        CONNECT_PACER.reset(pacing)
    return [record for records in per_host for record in records]


def run_probes(
    targets: Sequence[tuple[str, int]],
    gate: TargetGate,
    settings: ProbeSettings,
    nmap_names: Mapping[tuple[str, int], str] | None = None,
    stop: Callable[[], bool] | None = None,
) -> list[Record]:
    """Run ``probe_services`` to completion in a fresh event loop; [] once stop() turns true."""
    return asyncio.run(_until_stopped(probe_services(targets, gate, settings, nmap_names), stop))


async def _until_stopped(
    work: Coroutine[Any, Any, list[Record]], stop: Callable[[], bool] | None
) -> list[Record]:
    """Await work, cancelled (its connections closed) as soon as stop() turns true."""
    task = asyncio.ensure_future(work)
    while stop is not None and not task.done():
        if stop():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return []
        await asyncio.wait({task}, timeout=STOP_POLL_SECONDS)
    return await task
