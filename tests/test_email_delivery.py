"""`rolecall report email` against a real aiosmtpd relay: TLS, AUTH, attachments, failures."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from rolecall.inventory.store import Store
from rolecall.orchestrator.demo.lab_support import self_signed
from tests.cli_helpers import run_cli
from tests.report_helpers import SINCE, UNTIL

HOST = "127.0.121.25"
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
USER, PASSWORD = "reporter", "s3cret-pass"
PERIOD = ("--since", SINCE.date().isoformat(), "--until", UNTIL.date().isoformat())


@dataclass
class Relay:
    """What the relay saw: messages with their session's TLS and AUTH state."""

    port: int = 0
    refuse_rcpt: bool = False
    received: list[dict[str, Any]] = field(default_factory=list)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        """Accept or refuse a recipient."""
        if self.refuse_rcpt:
            return "554 5.7.1 relaying denied"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        """Keep the message and how it arrived."""
        self.received.append(
            {
                "tls": session.ssl is not None
                or server.transport.get_extra_info("cipher") is not None,
                "login": session.auth_data.login if session.auth_data else None,
                "authenticated": session.authenticated,
                "rcpt": list(envelope.rcpt_tos),
                "data": envelope.content,
            }
        )
        return "250 queued"


def _authenticate(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    """Accept exactly the test's user and password."""
    ok = isinstance(auth_data, LoginPassword) and (
        auth_data.login.decode() == USER and auth_data.password.decode() == PASSWORD
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the relay's address (as an IP SAN) and its key."""
    return self_signed(directory, "relay", address=HOST, days=2)


def _free_port() -> int:
    """A port nothing listens on at HOST right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """The relay's certificate and key."""
    return _certificate(tmp_path)


def _start(relay: Relay, tls_files: tuple[Path, Path], implicit: bool) -> Controller:
    """Start aiosmtpd on HOST with AUTH over TLS only (STARTTLS or implicit TLS)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_files)
    relay.port = _free_port()
    tls: dict[str, Any] = (
        {"ssl_context": context} if implicit else {"tls_context": context, "require_starttls": True}
    )
    controller = Controller(
        relay,
        hostname=HOST,
        port=relay.port,
        authenticator=_authenticate,
        # aiosmtpd does not count implicit TLS as TLS for this check; the client is TLS-only.
        auth_require_tls=not implicit,
        auth_required=True,
        server_hostname=HOST,
        **tls,
    )
    controller.start()
    return controller


@pytest.fixture(params=["starttls", "implicit"])
def relay(request: pytest.FixtureRequest, tls_files: tuple[Path, Path]) -> Iterator[Relay]:
    """A running relay in one TLS mode."""
    found = Relay()
    controller = _start(found, tls_files, implicit=request.param == "implicit")
    found.mode = request.param  # type: ignore[attr-defined]
    yield found
    controller.stop()


def _config(tmp_path: Path, port: int, tls: str, ca: Path, password: str = PASSWORD) -> Path:
    """A config naming the relay, the password file and where reports are kept."""
    secret = tmp_path / "password"
    secret.write_text(password + "\n", encoding="utf-8")
    config = tmp_path / "rolecall.toml"
    config.write_text(
        "[email]\n"
        f'host = "{HOST}"\nport = {port}\ntls = "{tls}"\nuser = "{USER}"\n'
        f'password_file = "{secret}"\nca_file = "{ca}"\nsender = "rolecall@example.org"\n'
        f'to = ["soc@example.org"]\ntimeout = 5.0\nkeep_dir = "{tmp_path / "kept"}"\n',
        encoding="utf-8",
    )
    return config


def _runs(db: Path) -> list[Any]:
    """The report-email runs recorded."""
    store = Store.open(str(db))
    with store.read("read rows") as connection:
        rows = list(
            connection.exec_driver_sql(
                "select status, error, counts from run where kind = 'report-email' order by id"
            )
        )
    store.close()
    return rows


def test_report_arrives_over_tls_with_auth_and_attachments(
    capsys: pytest.CaptureFixture[str],
    report_inventory: Path,
    relay: Relay,
    tls_files: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, relay.port, relay.mode, tls_files[0])  # type: ignore[attr-defined]
    result = run_cli(
        capsys,
        "--config",
        str(config),
        "--db",
        str(report_inventory),
        "report",
        "email",
        "--to",
        "a@example.org",
        "--to",
        "b@example.org",
        *PERIOD,
    )
    assert result.code == 0, result.err
    assert len(relay.received) == 1
    got = relay.received[0]
    assert got["tls"] is True
    assert got["authenticated"] is True
    assert got["login"] == USER.encode()
    assert got["rcpt"] == ["a@example.org", "b@example.org"]
    message = email.message_from_bytes(got["data"], policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    subject = str(message["Subject"])
    assert subject.startswith("rolecall report 2026-02-23 to 2026-03-01: ")
    new = int(subject.rsplit(": ", 1)[1].split(maxsplit=1)[0])
    assert new > 0
    html = message.get_body(("html",))
    assert html is not None
    body = html.get_content()
    assert "<svg" not in body
    assert "<script" not in body.lower()
    assert "New findings" in body
    names = {part.get_filename(): part for part in message.iter_attachments()}
    assert set(names) == {"findings.csv", "findings-changes.csv"}
    findings = names["findings.csv"].get_content()
    assert findings.lstrip("\ufeff").startswith("change,rule,address,severity")
    assert findings.count("\nnew,") == new
    runs = _runs(report_inventory)
    assert runs[-1][0] == "ok"
    assert json.loads(runs[-1][2])["new_findings"] == new


def test_relay_down_is_a_failed_run_and_the_report_is_kept(
    capsys: pytest.CaptureFixture[str],
    report_inventory: Path,
    tls_files: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, _free_port(), "starttls", tls_files[0])
    result = run_cli(
        capsys, "--config", str(config), "--db", str(report_inventory), "report", "email"
    )
    assert result.code == 1
    assert result.err.startswith(f"rolecall: relay {HOST}:")
    assert "refused the connection" in result.err
    assert result.err.count("\n") == 1
    kept = list((tmp_path / "kept").glob("report-*/report.html"))
    assert len(kept) == 1
    assert (kept[0].parent / "findings.csv").is_file()
    assert str(kept[0].parent) in result.err
    status, error, _ = _runs(report_inventory)[-1]
    assert status == "failed"
    assert "refused the connection" in error


def test_relay_refusing_recipients_is_a_failed_run(
    capsys: pytest.CaptureFixture[str],
    report_inventory: Path,
    tls_files: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    refusing = Relay(refuse_rcpt=True)
    controller = _start(refusing, tls_files, implicit=False)
    try:
        config = _config(tmp_path, refusing.port, "starttls", tls_files[0])
        result = run_cli(
            capsys, "--config", str(config), "--db", str(report_inventory), "report", "email"
        )
    finally:
        controller.stop()
    assert result.code == 1
    assert "refused the recipients soc@example.org" in result.err
    assert refusing.received == []
    assert _runs(report_inventory)[-1][0] == "failed"


def test_wrong_password_is_refused_login(
    capsys: pytest.CaptureFixture[str],
    report_inventory: Path,
    tls_files: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    found = Relay()
    controller = _start(found, tls_files, implicit=True)
    try:
        config = _config(tmp_path, found.port, "implicit", tls_files[0], password="wrong")
        result = run_cli(
            capsys, "--config", str(config), "--db", str(report_inventory), "report", "email"
        )
    finally:
        controller.stop()
    assert result.code == 1
    assert f"refused the login for {USER!r}" in result.err
    assert found.received == []


def test_untrusted_certificate_is_not_sent_to(
    capsys: pytest.CaptureFixture[str],
    report_inventory: Path,
    tls_files: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    found = Relay()
    controller = _start(found, tls_files, implicit=False)
    try:
        (tmp_path / "other").mkdir()
        other, _ = _certificate(tmp_path / "other")
        config = _config(tmp_path, found.port, "starttls", other)
        result = run_cli(
            capsys, "--config", str(config), "--db", str(report_inventory), "report", "email"
        )
    finally:
        controller.stop()
    assert result.code == 1
    assert "TLS with relay" in result.err
    assert found.received == []


def test_no_recipients_or_relay_is_usage_error(
    capsys: pytest.CaptureFixture[str], report_inventory: Path, tmp_path: Path
) -> None:
    result = run_cli(
        capsys, "--db", str(report_inventory), "report", "email", "--to", "x@example.org"
    )
    assert result.code == 2
    assert "email.host" in result.err


def test_a_recipient_that_is_not_an_address_is_usage_error(
    capsys: pytest.CaptureFixture[str],
    report_inventory: Path,
    tls_files: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, _free_port(), "starttls", tls_files[0])
    base = ("--config", str(config), "--db", str(report_inventory), "report", "email")
    for bad in ("soc@example.org\r\nBcc: all@example.org", "Soc <soc@example.org>", "nobody"):
        result = run_cli(capsys, *base, "--to", bad)
        assert result.code == 2, bad
        assert "is not an email address" in result.err
        assert "Traceback" not in result.err


def test_the_password_is_never_sent_in_clear_to_a_remote_relay(
    capsys: pytest.CaptureFixture[str],
    report_inventory: Path,
    tls_files: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, 587, "none", tls_files[0])
    # A documentation address: the refusal comes before any connection is tried.
    text = config.read_text(encoding="utf-8").replace(f'host = "{HOST}"', 'host = "192.0.2.25"')
    config.write_text(text, encoding="utf-8")
    result = run_cli(
        capsys, "--config", str(config), "--db", str(report_inventory), "report", "email"
    )
    assert result.code == 1
    assert "refusing to send the password to 192.0.2.25 in clear" in result.err
    assert (tmp_path / "kept").is_dir()
