"""Benchmark: rolecall's active probes against nmap -sT -sV with its SOCKS/SMTP scripts.

Starts a loopback lab of real servers (microsocks, dante, aiosmtpd, Python's
HTTP server, OpenSSH, pyftpdlib, Dovecot, dnsmasq), runs the full active cycle
``rolecall scan subnet`` (nmap port discovery, then rolecall's probes, stored in
a fresh SQLite inventory) and one nmap run with -sV and its SOCKS/SMTP scripts,
and prints the wall-time ratio and a per-host table of which tool got each
role right (roles are per address, as the inventory holds them). Loopback only:
nmap's resolver is pointed at a lab dnsmasq and its proxy test at a lab web
server, so neither tool talks to anything else.

Run: python -m bench.probe_vs_nmap
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import defusedxml.ElementTree as SafeET

from bench.rolecall_command import rolecall_command
from rolecall.orchestrator.demo.lab_support import server_tls
from tests.probe_helpers import (
    MailServer,
    RelayPolicy,
    dante,
    dovecot,
    microsocks,
    process,
    submission_kwargs,
    web_server,
)

NMAP_CANARY = ("127.0.6.100", 18088)
"""A lab web server nmap's socks-open-proxy fetches through each proxy (instead of google)."""


@dataclass(frozen=True)
class LabHost:
    """One lab target and the roles it truly has."""

    label: str
    address: str
    port: int
    expected: frozenset[str]


LAB = (
    LabHost(
        "microsocks open :9050",
        "127.0.6.1",
        9050,
        frozenset({"socks-proxy", "socks5", "socks-proxy-open", "nonstandard-port"}),
    ),
    LabHost(
        "microsocks user/pass :1080",
        "127.0.6.2",
        1080,
        frozenset({"socks-proxy", "socks5", "socks-proxy-auth"}),
    ),
    LabHost(
        "microsocks open :8124",
        "127.0.6.3",
        8124,
        frozenset({"socks-proxy", "socks5", "socks-proxy-open", "nonstandard-port"}),
    ),
    LabHost(
        "dante socks4+5 :11095",
        "127.0.0.1",
        11095,
        frozenset({"socks-proxy", "socks4", "socks5", "socks-proxy-open", "nonstandard-port"}),
    ),
    LabHost(
        "smtp open relay :25 (slow lines)",
        "127.0.6.4",
        25,
        frozenset({"smtp-server", "smtp-open-relay"}),
    ),
    LabHost("smtp refuses relay :25", "127.0.6.5", 25, frozenset({"smtp-server"})),
    LabHost(
        "smtp submission :587",
        "127.0.6.6",
        587,
        frozenset({"smtp-server", "smtp-submission", "smtp-auth-required"}),
    ),
    LabHost("web server :8080", "127.0.6.7", 8080, frozenset({"web-server"})),
    LabHost("openssh :22", "127.0.6.8", 22, frozenset({"ssh-server"})),
    LabHost(
        "ftp anonymous :21 (no ftp-anon in nmap run)",
        "127.0.6.9",
        21,
        frozenset({"ftp-server", "ftp-anonymous"}),
    ),
    LabHost("dovecot pop3 :110", "127.0.6.10", 110, frozenset({"pop3-server"})),
    LabHost("dovecot imap :143", "127.0.6.10", 143, frozenset({"imap-server"})),
    LabHost("dnsmasq :53 (tcp)", "127.0.0.1", 53, frozenset({"dns-server"})),
)


@contextlib.contextmanager
def lab(directory: Path) -> Iterator[None]:
    """Run every lab server (and nmap's resolver and proxy-test page) for the block."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(microsocks("127.0.6.1", 9050))
        stack.enter_context(microsocks("127.0.6.2", 1080, "alice", "wonderland"))
        stack.enter_context(microsocks("127.0.6.3", 8124))
        stack.enter_context(dante(directory, 11095))
        servers = [
            MailServer("127.0.6.4", 25, RelayPolicy(), line_delay=0.05),
            MailServer("127.0.6.5", 25, RelayPolicy(local_domain="corp.test")),
            MailServer(
                "127.0.6.6",
                587,
                RelayPolicy(),
                **submission_kwargs(server_tls(directory, "mail.corp.test")),
            ),
        ]
        for server in servers:
            server.start()
            stack.callback(server.stop)
        stack.enter_context(web_server("127.0.6.7", 8080))
        stack.enter_context(web_server(*NMAP_CANARY))
        resolver = [
            "dnsmasq",
            "--keep-in-foreground",
            "--port=53",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--conf-file=/dev/null",
            "--user=root",
            f"--host-record=canary.lab,{NMAP_CANARY[0]}",
        ]
        stack.enter_context(process(resolver, "127.0.0.1", 53))
        key = directory / "ssh_host_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        Path("/run/sshd").mkdir(exist_ok=True)
        sshd = ["/usr/sbin/sshd", "-D", "-e", "-f", "/dev/null", "-h", str(key), "-p", "22"]
        stack.enter_context(process([*sshd, "-o", "ListenAddress=127.0.6.8"], "127.0.6.8", 22))
        ftp = [
            sys.executable,
            "-m",
            "pyftpdlib",
            "-i",
            "127.0.6.9",
            "-p",
            "21",
            "-d",
            str(directory),
        ]
        stack.enter_context(process(ftp, "127.0.6.9", 21))
        (directory / "dovecot").mkdir()
        stack.enter_context(dovecot(directory / "dovecot", "127.0.6.10", 143, 110))
        yield
        if any("DATA" in server.log.commands for server in servers):
            raise SystemExit("a lab SMTP server received DATA")


SCAN_CONFIG = """
[scope]
allow = [{allow}]
[scan]
resolve_names = false
skip_host_discovery = true
"""


def rolecall_roles(directory: Path) -> tuple[float, dict[str, set[str]]]:
    """Run `rolecall scan subnet` on the lab; return the wall time and roles per address."""
    addresses = sorted({h.address for h in LAB})
    ports = ",".join(sorted({str(h.port) for h in LAB}, key=int))
    config = directory / "rolecall.toml"
    config.write_text(SCAN_CONFIG.format(allow=", ".join(f'"{a}/32"' for a in addresses)))
    base = [*rolecall_command(), "--config", str(config), "--db", str(directory / "db")]
    started = time.monotonic()
    subprocess.run(
        [*base, "-q", "scan", "subnet", *(f"{a}/32" for a in addresses), "--ports", ports],
        check=True,
        capture_output=True,
    )
    elapsed = time.monotonic() - started
    exported = subprocess.run(
        [*base, "export", "inventory", "--format", "json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found: dict[str, set[str]] = {address: set() for address in addresses}
    for row in json.loads(exported):
        found[row["address"]] = set(row["roles"])
    return elapsed, found


def nmap_command(xml: Path) -> list[str]:
    """Return the nmap run compared with (loopback resolver, lab proxy-test page)."""
    ports = ",".join(sorted({str(h.port) for h in LAB}))
    script_args = ",".join(
        [
            f"proxy.url=http://canary.lab:{NMAP_CANARY[1]}/",
            "proxy.pattern=HTTP/1.0 200",
            "smtp-open-relay.domain=example.net",
            "smtp-open-relay.from=rolecall-probe",
            "smtp-open-relay.to=rolecall-probe",
        ]
    )
    return [
        "nmap",
        "-sT",
        "-sV",
        "-Pn",
        "-n",
        "--dns-servers",
        "127.0.0.1",
        "--script",
        "socks-open-proxy,socks-auth-info,smtp-open-relay,smtp-commands",
        "--script-args",
        script_args,
        "-p",
        ports,
        "-oX",
        str(xml),
        *sorted({h.address for h in LAB}),
    ]


def _nmap_port_roles(port_number: int, name: str, scripts: dict[str, str]) -> set[str]:
    """Translate nmap's service name and script output for one port into SPEC roles."""
    roles: set[str] = set()
    socks_versions = {v for v in ("socks4", "socks5") if v in name}
    open_proxy = scripts.get("socks-open-proxy", "")
    socks_versions |= {v for v in ("socks4", "socks5") if v in open_proxy}
    if "socks" in name or open_proxy or "socks-auth-info" in scripts:
        roles |= {"socks-proxy", *socks_versions}
        if port_number != 1080:
            roles.add("nonstandard-port")
    if "open" in open_proxy:
        roles.add("socks-proxy-open")
    methods = scripts.get("socks-auth-info", "")
    if "Username and password" in methods and "No authentication" not in methods:
        roles.add("socks-proxy-auth")
    if name in ("smtp", "submission", "smtps"):
        roles.add("smtp-server")
        if "Server is an open relay" in scripts.get("smtp-open-relay", ""):
            roles.add("smtp-open-relay")
        if "authentication needed" in scripts.get("smtp-open-relay", ""):
            roles.add("smtp-auth-required")
        if port_number in (465, 587) and "AUTH" in scripts.get("smtp-commands", ""):
            roles.add("smtp-submission")
    if name.startswith("http"):
        roles.add("web-server")
    simple = {"ssh": "ssh-server", "ftp": "ftp-server", "domain": "dns-server"}
    simple |= {"pop3": "pop3-server", "imap": "imap-server"}
    if name in simple:
        roles.add(simple[name])
    return roles


def nmap_roles() -> tuple[float, dict[str, set[str]], dict[str, str]]:
    """Scan the lab with nmap; return wall time, roles and service names per address."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "scan.xml"
        started = time.monotonic()
        subprocess.run(nmap_command(xml), check=True, capture_output=True)
        elapsed = time.monotonic() - started
        root = SafeET.parse(xml).getroot()
    found: dict[str, set[str]] = {}
    names: dict[str, str] = {}
    if root is None:
        return elapsed, found, names
    for host in root.iter("host"):
        address_element = host.find("address")
        address = address_element.get("addr", "") if address_element is not None else ""
        for port in host.iter("port"):
            state = port.find("state")
            if state is None or state.get("state") != "open":
                continue
            number = int(port.get("portid", "0"))
            service = port.find("service")
            name = service.get("name", "") if service is not None else ""
            scripts = {s.get("id", ""): s.get("output", "") for s in port.iter("script")}
            found.setdefault(address, set()).update(_nmap_port_roles(number, name, scripts))
            names[address] = ",".join(filter(None, [names.get(address, ""), name]))
    return elapsed, found, names


def expected_roles() -> dict[str, tuple[str, frozenset[str]]]:
    """The lab's truth per address: a label and the union of its services' roles."""
    truth: dict[str, tuple[str, frozenset[str]]] = {}
    for host in LAB:
        label, roles = truth.get(host.address, ("", frozenset()))
        truth[host.address] = (" + ".join(filter(None, [label, host.label])), roles | host.expected)
    return truth


def main() -> int:
    """Run both tools on the lab and print the comparison; exit 1 if rolecall is worse."""
    with tempfile.TemporaryDirectory() as tmp, lab(Path(tmp)):
        ours_time, ours = rolecall_roles(Path(tmp))
        nmap_time, theirs, names = nmap_roles()
    print(f"rolecall scan subnet: {ours_time:6.2f} s   nmap -sT -sV + scripts: {nmap_time:6.2f} s")
    print(f"speed: rolecall is {nmap_time / ours_time:.1f}x faster than nmap -sV")
    print()
    header = f"{'host':58} {'rolecall':9} {'nmap':9} differences (missed -, wrong +)"
    print(header)
    print("-" * len(header))
    truth = expected_roles()
    ours_right = theirs_right = 0
    worse = False
    for address, (label, expected) in truth.items():
        mine, other = ours.get(address, set()), theirs.get(address, set())
        ours_ok, theirs_ok = mine == expected, other == expected
        ours_right += ours_ok
        theirs_right += theirs_ok
        worse |= theirs_ok and not ours_ok
        notes = []
        for tool, got in (("rolecall", mine), (f"nmap[{names.get(address, '')}]", other)):
            diff = sorted(f"-{r}" for r in expected - got) + sorted(f"+{r}" for r in got - expected)
            if diff:
                notes.append(f"{tool}: {' '.join(diff)}")
        mark = {True: "right", False: "WRONG"}
        print(f"{label[:58]:58} {mark[ours_ok]:9} {mark[theirs_ok]:9} {'; '.join(notes)}")
    print()
    print(f"hosts right: rolecall {ours_right}/{len(truth)}, nmap {theirs_right}/{len(truth)}")
    return 1 if worse or ours_time >= nmap_time else 0


if __name__ == "__main__":
    sys.exit(main())
