"""HTTP CONNECT in captures: real clients through tinyproxy on loopback, and hostile streams.

The loopback tests record curl (``--proxytunnel``) sending mail and fetching a page
through tinyproxy with tcpdump, then ingest the capture with the real command line:
the connect export, the tunnelled SMTP row with ``via_proxy``, the mail-via-proxy
finding and the proxy's egress link. The hostile captures are built with dpkt.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from rolecall.probes.records import ConnectRequest, Observation
from tests.cli_helpers import Listener, cli_json, ingest
from tests.daemon_helpers import ROLECALL
from tests.pcap_helpers import (
    Turn,
    aiosmtpd_server,
    free_port,
    loopback_capture,
    of_type,
    read_all,
    session,
    smtp,
    smtp_turns,
    tinyproxy,
    warnings,
    write_pcap,
)

NET = "127.0.196.0/24"
SERVER, PROXY, BOT, USER = "127.0.196.2", "127.0.196.3", "127.0.196.10", "127.0.196.11"
WEB = "127.0.196.5"


def curl_mail(
    source: str, proxy: tuple[str, int], server: tuple[str, int], tmp: Path, user: str = ""
) -> subprocess.CompletedProcess[str]:
    """Send one message with curl from ``source`` through an HTTP CONNECT tunnel."""
    mail = tmp / "mail.txt"
    mail.write_text(
        "From: <spam@example.org>\r\nTo: <victim@example.net>\r\nSubject: via http proxy\r\n"
        "X-Mailer: Bulk 3.0\r\n\r\nbuy now\r\n"
    )
    return subprocess.run(
        [
            "curl",
            "-sS",
            "--proxytunnel",
            "-x",
            f"http://{proxy[0]}:{proxy[1]}",
            "--interface",
            source,
            f"smtp://{server[0]}:{server[1]}/bot.example",
            "--mail-from",
            "spam@example.org",
            "--mail-rcpt",
            "victim@example.net",
            "-T",
            str(mail),
            *(["--proxy-user", user] if user else []),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_smtp_through_tinyproxy(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_path: Path
) -> None:
    """curl mailing through tinyproxy: CONNECT row, tunnelled SMTP, finding, egress link."""
    with (
        aiosmtpd_server(SERVER) as (host, port, received),
        tinyproxy(PROXY, tmp_path) as proxy,
        loopback_capture(tmp_path / "t.pcap", NET) as pcap,
    ):
        done = curl_mail(BOT, proxy, (host, port), tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(received) == 1
    ingest(capsys, db_path, None, pcap)

    connects = cli_json(capsys, db_path, None, "export", "connect")
    assert [
        (r["client"], r["proxy"], r["proxy_port"], r["status"], r["request_host"]) for r in connects
    ] == [(BOT, PROXY, proxy[1], 200, SERVER)]
    assert (connects[0]["request_port"], connects[0]["user"], connects[0]["source"]) == (
        port,
        "",
        "pcap",
    )
    rows = cli_json(capsys, db_path, None, "export", "smtp")
    tunnelled = [r for r in rows if r["via_proxy"]]
    assert [(r["client"], r["server"], r["server_port"], r["via_proxy"]) for r in tunnelled] == [
        (BOT, SERVER, port, PROXY)
    ]
    assert (tunnelled[0]["subject"], tunnelled[0]["user_agent"]) == ("via http proxy", "Bulk 3.0")

    found = {
        (f["rule"], f["address"]): f for f in cli_json(capsys, db_path, None, "findings", "list")
    }
    summary = str(found["mail-via-proxy", BOT]["summary"])
    assert BOT in summary
    assert PROXY in summary
    # No [scope] and the aiosmtpd port is not a mail port (25, 465, 587, 2525): a tunnel
    # granted without credentials is then an ordinary explicit proxy, roles only.
    assert port not in (25, 465, 587, 2525)
    assert ("open-http-proxy", PROXY) not in found

    # The same capture with the proxy inside [scope] and the client outside: open to the world.
    # With both inside (a corporate proxy for its own hosts), roles only again.
    scoped: dict[str, dict[tuple[object, object], dict[str, object]]] = {}
    for name, inside in (("world", PROXY), ("corp", NET)):
        config = tmp_path / f"{name}.toml"
        config.write_text(f'[scope]\nallow = ["{inside}"]\n')
        scoped_db = tmp_path / f"{name}.db"
        ingest(capsys, scoped_db, config, pcap)
        listed = cli_json(capsys, scoped_db, config, "findings", "list")
        scoped[name] = {(f["rule"], f["address"]): f for f in listed}
    assert ("open-http-proxy", PROXY) not in scoped["corp"]
    open_proxy = scoped["world"]["open-http-proxy", PROXY]
    assert f"for {BOT} to {SERVER} port {port} without credentials" in str(open_proxy["summary"])
    assert f"{BOT} is outside the scope" in str(open_proxy["summary"])
    assert str(open_proxy["evidence"][0]).startswith("connect:")  # type: ignore[index]
    roles = {
        r["address"]: r["roles"] for r in cli_json(capsys, db_path, None, "export", "inventory")
    }
    assert "http-proxy" in roles[PROXY]
    assert "http-proxy-auth" not in roles[PROXY]
    assert "web-client" in roles[BOT]

    with sqlite3.connect(db_path) as db:
        links = db.execute(
            "SELECT address, value, port FROM observation WHERE kind = 'proxy-egress'"
        ).fetchall()
        connect_seen = db.execute(
            "SELECT address, port, value FROM observation WHERE kind = 'http-connect'"
        ).fetchall()
    assert links == [(PROXY, BOT, port)]
    assert connect_seen == [(PROXY, proxy[1], "granted")]


def test_basic_auth_user_kept_password_only_when_asked(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """tinyproxy with BasicAuth: 407 without credentials; the user kept, the password on demand."""
    with (
        aiosmtpd_server(SERVER) as (host, port, received),
        tinyproxy(PROXY, tmp_path, basic_auth=("bob", "s3cret")) as proxy,
        loopback_capture(tmp_path / "a.pcap", NET) as pcap,
    ):
        refused = curl_mail(USER, proxy, (host, port), tmp_path)
        done = curl_mail(BOT, proxy, (host, port), tmp_path, user="bob:s3cret")
    assert refused.returncode != 0  # the proxy asked for credentials
    assert done.returncode == 0, done.stderr
    assert len(received) == 1

    config = tmp_path / "rolecall.toml"
    config.write_text("[pcap]\ncapture_socks_password = true\n")
    for db, kept, password in (
        (tmp_path / "plain.db", None, ""),
        (tmp_path / "kept.db", config, "s3cret"),
    ):
        ingest(capsys, db, kept, pcap)
        with sqlite3.connect(db) as conn:
            rows = conn.execute(
                "SELECT client, status, user, password, request_port FROM connect ORDER BY ts"
            ).fetchall()
        assert rows == [(USER, 407, "", "", port), (BOT, 200, "bob", password, port)]
        exported = cli_json(capsys, db, None, "export", "connect")
        assert [(r["client"], r["user"]) for r in exported] == [(USER, ""), (BOT, "bob")]
        assert all("password" not in r for r in exported)
        tunnelled = [r for r in cli_json(capsys, db, None, "export", "smtp") if r["via_proxy"]]
        assert [(r["client"], r["via_proxy"]) for r in tunnelled] == [(BOT, PROXY)]
        rules = {(f["rule"], f["address"]) for f in cli_json(capsys, db, None, "findings", "list")}
        assert ("open-http-proxy", PROXY) not in rules  # it granted only with credentials
        roles = {
            r["address"]: r["roles"] for r in cli_json(capsys, db, None, "export", "inventory")
        }
        assert {"http-proxy", "http-proxy-auth"} <= set(roles[PROXY])


def test_https_through_tinyproxy_gives_sni_via_proxy(tmp_path: Path) -> None:
    """The TLS ClientHello inside the tunnel is read as sent to the requested server."""
    web = Listener(WEB, free_port(WEB))  # accepts, then closes: enough for curl's hello
    try:
        with (
            tinyproxy(PROXY, tmp_path) as proxy,
            loopback_capture(tmp_path / "h.pcap", NET) as pcap,
        ):
            subprocess.run(
                [
                    "curl",
                    "-sSk",
                    "--max-time",
                    "5",
                    "--proxytunnel",
                    "-x",
                    f"http://{proxy[0]}:{proxy[1]}",
                    "--interface",
                    USER,
                    "--connect-to",
                    f"shop.example.test:443:{WEB}:{web.port}",
                    "https://shop.example.test/",
                ],
                capture_output=True,
                timeout=30,
                check=False,
            )
    finally:
        web.close()
    items = read_all(pcap)
    (request,) = of_type(items, ConnectRequest)
    assert (request.client, request.request_host, request.request_port, request.status) == (
        USER,
        WEB,
        web.port,
        200,
    )
    seen = {o.kind: o for o in of_type(items, Observation) if o.address == USER}
    assert seen["http-user-agent"].value.startswith("curl/")
    sni = seen["tls-sni"]
    assert (sni.value, sni.port) == ("shop.example.test", web.port)
    assert json.loads(sni.detail) == {"server": WEB, "via_proxy": PROXY}


def connect_session(turns: list[Turn], cport: int, start: float) -> list[tuple[float, bytes]]:
    """The packets of one client->proxy connection on port 3128."""
    return session(
        turns, client=CLIENT, cport=cport, server=PROXY_SYN, sport=3128, start=start
    ).packets


CLIENT, PROXY_SYN, MX = "10.0.0.5", "10.0.0.3", "192.0.2.25"
OK = b"HTTP/1.1 200 Connection established\r\nProxy-agent: test\r\n\r\n"
MAIL = smtp_turns(
    ("EHLO bot\n", "250 ok\n"),
    ("MAIL FROM:<a@b.example>\nRCPT TO:<c@d.example>\nDATA\n", "250 ok\n250 ok\n354 go\n"),
    ("Subject: tunnelled\n\nbody\n.\n", "250 queued\n"),
    ("QUIT\n", "221 bye\n"),
)


def test_ipv6_literal_pipelined_early_data_and_interim_reply(tmp_path: Path) -> None:
    """[v6]:port targets, a 100 before the 200, and a client speaking before the reply."""
    auth = base64.b64encode(b"eve:pw").decode()
    request = (
        f"CONNECT [2001:DB8::0019]:25 HTTP/1.1\r\nProxy-Authorization: Basic {auth}\r\n\r\n"
    ).encode()
    http_inside = [
        (True, request + b"GET / HTTP/1.1\r\nHost: x.example\r\nUser-Agent: ua\r\n\r\n"),
        (False, b"HTTP/1.1 100 Continue\r\n\r\n" + OK),
    ]
    path = write_pcap(
        tmp_path / "v6.pcap",
        connect_session([(True, request), (False, OK), *MAIL], 40000, 1_700_000_000.0)
        + connect_session(http_inside, 40001, 1_700_000_100.0),
    )
    items = read_all(path, capture_socks_password=True)
    assert not warnings(items)
    requests = of_type(items, ConnectRequest)
    assert [(r.request_host, r.request_port, r.status, r.user, r.password) for r in requests] == [
        ("2001:db8::19", 25, 200, "eve", "pw")
    ] * 2
    (mail,) = smtp(items)
    assert (mail.client, mail.server, mail.via_proxy, mail.subject) == (
        CLIENT,
        "2001:db8::19",
        PROXY_SYN,
        "tunnelled",
    )
    hosts = [o for o in of_type(items, Observation) if o.kind == "http-host"]
    assert [(o.address, o.value) for o in hosts] == [(CLIENT, "x.example")]
    assert '"via_proxy": "10.0.0.3"' in hosts[0].detail


def hostile_capture(tmp_path: Path) -> Path:
    """A sound CONNECT, then hostile ones, then another sound one, in one capture."""
    sound = [(True, b"CONNECT mx.example.net:25 HTTP/1.1\r\n\r\n"), (False, OK), *MAIL]
    hostile: list[list[Turn]] = [
        [(True, b"CONNECT " + b"a" * (1 << 20) + b":25 HTTP/1.1\r\n\r\n"), (False, OK)],
        [(True, b"CONNECT mx.example.net:25 HTTP/1.1\r\n\r\n"), (False, b"HTTP/1.1 407\r\n\r\n")],
        [
            (True, b"CONNECT mx.example.net:25 HTTP/1.1\r\n\r\n"),
            (False, b"HTTP/1.1 200 OK\r\n" + b"X-Pad: never ending\r\n" * 40_000),
        ],
    ]
    packets = connect_session(sound, 41000, 1_700_000_000.0)
    for n, turns in enumerate(hostile):
        packets += connect_session(turns, 41001 + n, 1_700_000_100.0 + 100 * n)
    packets += connect_session(sound, 41009, 1_700_001_000.0)
    return write_pcap(tmp_path / "hostile.pcap", packets)


def test_hostile_connects_one_warning_each_rest_stored(tmp_path: Path) -> None:
    """A 1 MB CONNECT line, a 407 without headers, a reply head that never ends: bounded."""
    pcap = hostile_capture(tmp_path)
    db = tmp_path / "inventory.db"
    done = subprocess.run(
        [*ROLECALL, "--db", str(db), "ingest", "pcap", str(pcap)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    shown = [line for line in done.stderr.splitlines() if "HTTP CONNECT" in line]
    assert len(shown) == 3, done.stderr
    assert "request head longer than 65536 bytes" in shown[0]
    assert "407 reply without Proxy-Authenticate" in shown[1]
    assert "reply head never ended" in shown[2]
    assert all(f"{pcap}@" in line for line in shown)
    with sqlite3.connect(db) as conn:
        connects = conn.execute("SELECT client_port, status FROM connect ORDER BY ts").fetchall()
        mails = conn.execute("SELECT client, via_proxy FROM smtp").fetchall()
    assert connects == [(41000, 200), (41002, 407), (41003, 200), (41009, 200)]
    assert mails == [(CLIENT, PROXY_SYN)] * 2


def test_cut_and_gapped_heads_keep_the_request(tmp_path: Path) -> None:
    """A reply cut before its head ends, and no reply at all: the request is still recorded."""
    request = b"CONNECT 192.0.2.25:587 HTTP/1.0\r\nUser-Agent: bot\r\n\r\n"
    path = write_pcap(
        tmp_path / "cut.pcap",
        connect_session([(True, request), (False, b"HTTP/1.0 403 Forbidden\r\n")], 42000, 1e9)
        + connect_session([(True, request)], 42001, 1e9 + 100),
    )
    items = read_all(path)
    requests = of_type(items, ConnectRequest)
    assert [(r.client_port, r.status, r.request_host, r.request_port) for r in requests] == [
        (42000, 403, MX, 587),
        (42001, 0, MX, 587),
    ]
    (cut,) = warnings(items)
    assert "reply head cut short" in cut.message
    assert cut.traffic
    refused = [o for o in of_type(items, Observation) if o.kind == "http-connect"]
    assert [(o.address, o.value) for o in refused] == [(PROXY_SYN, "refused")]


def test_second_request_after_a_407_on_the_same_connection(tmp_path: Path) -> None:
    """A browser asks again on the same connection after a 407: both requests are kept."""
    auth = base64.b64encode(b"eve:pw").decode()
    first = b"CONNECT 192.0.2.25:25 HTTP/1.1\r\nHost: 192.0.2.25:25\r\n\r\n"
    body = b"<html>credentials, please</html>"
    refusal = (
        b"HTTP/1.1 407 Proxy Authentication Required\r\n"
        b'Proxy-Authenticate: Basic realm="corp"\r\n'
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    again = f"CONNECT 192.0.2.25:25 HTTP/1.1\r\nProxy-Authorization: Basic {auth}\r\n\r\n"
    turns = [
        (True, first),
        (False, refusal),
        (False, body),  # the body in a packet of its own
        (True, again.encode()),
        (False, OK),
        *MAIL,
    ]
    path = write_pcap(tmp_path / "retry.pcap", connect_session(turns, 40002, 1_700_000_200.0))
    items = read_all(path)
    assert not warnings(items)
    requests = of_type(items, ConnectRequest)
    assert [(r.status, r.user, r.request_host) for r in requests] == [
        (407, "", MX),
        (200, "eve", MX),
    ]
    (mail,) = smtp(items)
    assert (mail.client, mail.server, mail.via_proxy, mail.subject) == (
        CLIENT,
        MX,
        PROXY_SYN,
        "tunnelled",
    )


AUTH_CASES = [  # (proxy, requested port, Proxy-Authorization value or None, user recorded)
    ("10.0.1.1", 25, None, ""),
    ("10.0.1.2", 443, None, ""),
    ("10.0.1.3", 587, "NTLM TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAGAbEdAAAADw==", "(NTLM)"),
    ("10.0.1.4", 465, "Negotiate YIIFyQYGKwYBBQUCoIIFvTCCBbmgMDAuBgkqhkiC9xIBAgI=", "(Negotiate)"),
    ("10.0.1.5", 2525, 'Digest username="eve", realm="corp", response="00"', "(Digest)"),
    ("10.0.1.6", 25, "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x", "(Bearer)"),
    ("10.0.1.7", 25, "Basic " + base64.b64encode(b":pw").decode(), "(Basic)"),
    ("10.0.1.8", 25, "Basic !!!", "(Basic)"),
]


def test_credentials_of_any_scheme_and_the_mail_port_clause(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """No [scope]: only a tunnel to a mail port without any credentials is open-http-proxy.

    A Proxy-Authorization that names no Basic user is recorded as its scheme in
    parentheses: credentials were given, so nothing is raised for it.
    """
    packets: list[tuple[float, bytes]] = []
    for n, (proxy, port, auth, _) in enumerate(AUTH_CASES):
        head = f"CONNECT 192.0.2.25:{port} HTTP/1.1\r\n"
        head += f"Proxy-Authorization: {auth}\r\n" if auth else ""
        turns = [(True, (head + "\r\n").encode()), (False, OK)]
        packets += session(turns, CLIENT, 43000 + n, proxy, 3128, start=1e9 + n).packets
    db = tmp_path / "auth.db"
    ingest(capsys, db, None, write_pcap(tmp_path / "auth.pcap", packets))
    users = {r["proxy"]: r["user"] for r in cli_json(capsys, db, None, "export", "connect")}
    assert users == {proxy: user for proxy, _, _, user in AUTH_CASES}
    rules = cli_json(capsys, db, None, "findings", "list")
    raised = {f["address"]: str(f["summary"]) for f in rules if f["rule"] == "open-http-proxy"}
    assert list(raised) == ["10.0.1.1"]  # port 25 without credentials; 443 is roles only
    assert "without credentials (a mail port)" in raised["10.0.1.1"]
    roles = {r["address"]: r["roles"] for r in cli_json(capsys, db, None, "export", "inventory")}
    assert all("http-proxy" in roles[proxy] for proxy, *_ in AUTH_CASES)
