"""A real Exim on loopback for the SMTP probe tests: its own config, spool, log and certificate.

Each test gets an Exim daemon in the foreground (``-bdf``), started and stopped by
its PID, whose ACLs write every MAIL, RCPT and DATA they see to its main log
(``probe-seen ...`` lines), so a test can prove what the probe sent.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rolecall.orchestrator.demo.lab_support import self_signed, wait_listening
from tests.pcap_helpers import free_port

EXIM = shutil.which("exim4", path="/usr/sbin:/usr/bin:/sbin") or "/usr/sbin/exim4"

TRUSTS_OWN_SENDERS = """\
  accept domains = +local_domains
  accept condition = ${if eq{$sender_address_domain}{LOCAL}}
  deny message = relay not permitted
"""
"""RCPT policy of a relay that trusts its own domain's senders (spammers forge them)."""

LOCAL_ONLY = """\
  accept domains = +local_domains
  deny message = relay not permitted
"""
"""RCPT policy of an MTA that takes mail for its own domain only, any local part."""

EXIM_CONF = """\
primary_hostname = {hostname}
qualify_domain = {domain}
domainlist local_domains = {domain}
spool_directory = {root}/spool
log_file_path = {root}/log/%slog
exim_user = {user}
exim_group = {group}
local_interfaces = {address}
daemon_smtp_ports = {ports}
tls_on_connect_ports = {tls_ports}
tls_advertise_hosts = *
tls_certificate = {cert}
tls_privatekey = {key}
host_lookup =
rfc1413_hosts =
acl_smtp_mail = acl_mail
acl_smtp_rcpt = acl_rcpt
acl_smtp_predata = acl_predata

begin acl

acl_mail:
  warn logwrite = probe-seen MAIL <$sender_address>
  accept

acl_rcpt:
  warn logwrite = probe-seen RCPT <$local_part@$domain>
{rcpt_policy}
acl_predata:
  warn logwrite = probe-seen DATA
  deny message = this test server takes no mail

begin routers
{authenticators}"""

REFUSING_AUTHENTICATOR = """
begin authenticators

plain:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = false
"""
"""AUTH PLAIN offered, no credentials accepted."""


CHUNKING_CONF = """\
primary_hostname = mx.chunk.test
qualify_domain = chunk.test
spool_directory = {root}/spool
log_file_path = {root}/log/%slog
exim_user = root
exim_group = root
local_interfaces = {address}
daemon_smtp_ports = {port}
host_lookup =
rfc1413_hosts =
tls_advertise_hosts =
chunking_advertise_hosts = *
acl_smtp_rcpt = acl_rcpt

begin acl

acl_rcpt:
  accept

begin routers

discard:
  driver = redirect
  data = :blackhole:
"""
"""An Exim that offers CHUNKING (no STARTTLS, so the capture can be read) and takes all mail."""


@dataclass(frozen=True)
class Exim:
    """A running Exim: where it listens and where it logs."""

    address: str
    pid: int
    log: Path

    def seen(self) -> list[str]:
        """Return every MAIL, RCPT and DATA the ACLs logged, in order ("MAIL <a@b>", "DATA")."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return re.findall(r"probe-seen (.*)", text)


@contextmanager
def exim(
    root: Path,
    address: str,
    ports: Sequence[int],
    *,
    rcpt_policy: str,
    hostname: str = "mail.corp.test",
    domain: str = "corp.test",
    tls_ports: Sequence[int] = (),
    dns_names: Sequence[str] = (),
    auth: bool = False,
) -> Iterator[Exim]:
    """Run Exim on address:ports (``tls_ports`` among them speak TLS first) for the block.

    With ``auth`` it offers AUTH PLAIN and accepts no credentials.
    """
    for sub in ("spool", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    cert, key = self_signed(root, hostname, dns_names=dns_names, days=2)
    conf = root / "exim.conf"
    conf.write_text(
        EXIM_CONF.format(
            hostname=hostname,
            domain=domain,
            root=root,
            user=pwd.getpwuid(os.getuid()).pw_name,
            group=grp.getgrgid(os.getgid()).gr_name,
            address=address,
            ports=" : ".join(str(port) for port in ports),
            tls_ports=" : ".join(str(port) for port in tls_ports),
            cert=cert,
            key=key,
            rcpt_policy=rcpt_policy.replace("LOCAL", domain),
            authenticators=REFUSING_AUTHENTICATOR if auth else "",
        )
    )
    with _daemon(conf, address, ports) as pid:
        yield Exim(address, pid, root / "log" / "mainlog")


@contextmanager
def _daemon(conf: Path, address: str, ports: Sequence[int]) -> Iterator[int]:
    """Run an Exim daemon in the foreground with a config until the block ends; yield its PID."""
    proc = subprocess.Popen(
        [EXIM, "-C", str(conf), "-bdf"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        for port in ports:
            wait_listening(address, port)
        yield proc.pid
    finally:
        # Exim's connection children share its process group, which is its PID.
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


@contextmanager
def chunking_exim(root: Path, address: str) -> Iterator[int]:
    """Run an Exim daemon offering CHUNKING on address for the block; yield its port."""
    for sub in ("spool", "log"):
        (root / sub).mkdir(parents=True)
    port = free_port(address)
    conf = root / "exim.conf"
    conf.write_text(CHUNKING_CONF.format(root=root, address=address, port=port))
    with _daemon(conf, address, [port]):
        yield port
