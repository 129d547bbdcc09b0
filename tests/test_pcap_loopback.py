"""Real traffic recorded on loopback with tcpdump: smtplib, swaks and SOCKS5 via microsocks."""

from __future__ import annotations

import subprocess
from pathlib import Path

from rolecall.probes.records import Observation
from tests.pcap_helpers import (
    SourcedSMTP,
    aiosmtpd_server,
    loopback_capture,
    message,
    microsocks,
    of_type,
    read_all,
    smtp,
    socks,
)

NET = "127.0.193.0/24"
SERVER, PROXY, CLIENT, SWAKS, BOT = (
    "127.0.193.2",
    "127.0.193.3",
    "127.0.193.10",
    "127.0.193.11",
    "127.0.193.12",
)


def test_smtplib_to_aiosmtpd(tmp_path: Path) -> None:
    """A real smtplib session gives the transaction aiosmtpd received, refusal included."""
    with (
        aiosmtpd_server(SERVER) as (host, port, received),
        loopback_capture(tmp_path / "s.pcap", NET) as pcap,
    ):
        client = SourcedSMTP(CLIENT)
        client.connect(host, port)
        client.ehlo("workstation.example")
        body = message("me@example.org", "you@example.net", "loopback hello", "Outlook 16", 6000)
        refused = client.sendmail("me@example.org", ["you@example.net", "refuse@far.example"], body)
        client.quit()
    assert refused == {"refuse@far.example": (550, b"5.7.1 Relaying denied")}
    assert len(received) == 1
    items = read_all(pcap)
    (t,) = smtp(items)
    assert (t.client, t.server, t.server_port) == (CLIENT, SERVER, port)
    assert t.helo == "workstation.example"
    assert (t.mail_from, t.rcpt_to, t.refused_rcpt) == (
        "me@example.org",
        ("you@example.net",),
        ("refuse@far.example",),
    )
    assert (t.subject, t.user_agent) == ("loopback hello", "Outlook 16")
    assert t.last_reply.startswith("250 ")
    refusals = [o for o in of_type(items, Observation) if o.kind == "smtp-rcpt-refused"]
    assert [(o.address, o.value) for o in refusals] == [(CLIENT, "refuse@far.example")]


def test_swaks_with_x_mailer(tmp_path: Path) -> None:
    """swaks, a real command-line mailer, with its X-Mailer header replaced by ours."""
    with (
        aiosmtpd_server(SERVER) as (host, port, received),
        loopback_capture(tmp_path / "w.pcap", NET) as pcap,
    ):
        done = subprocess.run(
            [
                "swaks",
                "--server",
                f"{host}:{port}",
                "--local-interface",
                SWAKS,
                "--helo",
                "swaks.example",
                "--from",
                "bulk@example.org",
                "--to",
                "x@example.net",
                "--header",
                "X-Mailer: The Bat! (v9.1)",
                "--header",
                "Subject: cheap pills",
            ],
            capture_output=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert len(received) == 1
    (t,) = smtp(read_all(pcap))
    assert (t.client, t.helo, t.mail_from, t.rcpt_to) == (
        SWAKS,
        "swaks.example",
        "bulk@example.org",
        ("x@example.net",),
    )
    assert (t.user_agent, t.subject) == ("The Bat! (v9.1)", "cheap pills")


def test_smtp_through_microsocks(tmp_path: Path) -> None:
    """SMTP tunnelled through a real SOCKS5 proxy: the request, the tunnelled mail, the egress."""
    with (
        aiosmtpd_server(SERVER) as (host, port, received),
        microsocks(PROXY) as proxy,
        loopback_capture(tmp_path / "p.pcap", NET) as pcap,
    ):
        client = SourcedSMTP(BOT, proxy)
        client.connect(host, port)
        client.ehlo("bot.example")
        body = message("spam@example.org", "victim@example.net", "via proxy", "Bulk 2.0", 3000)
        client.sendmail("spam@example.org", ["victim@example.net"], body)
        client.quit()
    assert len(received) == 1
    items = read_all(pcap)
    (request,) = socks(items)
    assert (request.client, request.proxy, request.proxy_port) == (BOT, PROXY, proxy[1])
    assert (request.version, request.status, request.request_host, request.request_port) == (
        5,
        "succeeded",
        SERVER,
        port,
    )
    tunnelled = [t for t in smtp(items) if t.via_proxy]
    egress = [t for t in smtp(items) if not t.via_proxy]
    assert [(t.client, t.server, t.server_port, t.via_proxy) for t in tunnelled] == [
        (BOT, SERVER, port, PROXY)
    ]
    assert (tunnelled[0].subject, tunnelled[0].user_agent) == ("via proxy", "Bulk 2.0")
    # the same mail seen again on the proxy's own connection to the server
    assert [(t.client, t.server, t.subject) for t in egress] == [(PROXY, SERVER, "via proxy")]
    links = [o for o in of_type(items, Observation) if o.kind == "proxy-egress"]
    assert [(o.address, o.value, o.port) for o in links] == [(PROXY, BOT, port)]
