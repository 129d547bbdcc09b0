"""Who may use the console, over real HTTP and a real `rolecall serve`: sign-in, levels, tokens."""

from __future__ import annotations

import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from rolecall.console.access.accounts import Accounts
from rolecall.console.access.hashes import token_digest
from rolecall.console.access.headers import CONTENT_SECURITY_POLICY
from rolecall.console.access.throttle import MAX_FAILURES
from rolecall.inventory.store import Store
from rolecall.orchestrator.config import Config, validate_config
from rolecall.orchestrator.demo.lab_support import self_signed
from rolecall.orchestrator.errors import UsageError
from tests.console_helpers import access_config, served
from tests.daemon_helpers import ROLECALL, free_port, rolecall

PASSWORD = "correct horse battery"
TOKEN = "a-long-random-token-only-this-test-knows-0123456789"
PEOPLE = {"alice": ("triage", PASSWORD), "rita": ("read", PASSWORD)}
SCRIPTS = {"nightly": ("read", TOKEN)}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
ACKNOWLEDGE = {"rule": "open-relay", "address": "10.0.0.1"}
ELSEWHERE = "give --bind another port"
FAILED = "That name and password do not sign in."


@pytest.fixture(scope="module")
def people() -> Config:
    """A config with a triage user, a read user and a read token (hashing is slow: made once)."""
    return access_config(PEOPLE, SCRIPTS)


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    """An empty inventory."""
    opened = Store.open(str(db_path))
    yield opened
    opened.close()


@contextmanager
def client_of(
    config: Config, store: Store, verify: ssl.SSLContext | bool = True
) -> Iterator[httpx.Client]:
    """A client (cookies kept, redirects not followed) of the console served for real."""
    with (
        served(config, store) as base,
        httpx.Client(base_url=base, timeout=30, verify=verify) as http,
    ):
        yield http


def form_token(http: httpx.Client, path: str = "/login") -> str:
    """The form token the page at path carries."""
    found = CSRF.search(http.get(path).text)
    assert found, f"no form token on {path}"
    return found.group(1)


def sign_in(http: httpx.Client, name: str, password: str, next_path: str = "") -> httpx.Response:
    """Post the login form as a browser would (the form token from the login page)."""
    fields = {"csrf": form_token(http), "name": name, "password": password}
    if next_path:
        fields["next"] = next_path
    return http.post("/login", data=fields)


def test_an_open_console_admits_everyone_as_local_triage(store: Store) -> None:
    with client_of(Config(), store) as http:
        shown = http.get("/findings")
        assert shown.status_code == 200
        assert "local (triage)" in shown.text
        assert http.get("/api/findings").status_code == 200


def test_security_headers_on_pages_api_redirects_and_static(store: Store, people: Config) -> None:
    with client_of(people, store) as http:
        for path, cached in [
            ("/login", False),
            ("/findings", False),
            ("/api/findings", False),
            ("/static/console.css", True),
        ]:
            headers = http.get(path).headers
            assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
            assert "script-src 'self';" in headers["content-security-policy"]
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["referrer-policy"] == "same-origin"
            assert headers["x-frame-options"] == "DENY"
            assert (headers.get("cache-control") == "no-store") is not cached, path


def test_pages_send_to_sign_in_and_the_api_answers_401(store: Store, people: Config) -> None:
    with client_of(people, store) as http:
        page = http.get("/findings", params={"status": "open"})
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=%2Ffindings%3Fstatus%3Dopen"
        api = http.get("/api/findings")
        assert api.status_code == 401
        assert "sign in" in api.json()["error"]
        assert http.get("/static/console.css").status_code == 200


def test_sign_in_opens_the_pages_and_logout_closes_them(store: Store, people: Config) -> None:
    with client_of(people, store) as http:
        signed = sign_in(http, "alice", PASSWORD, "/findings?status=open")
        assert signed.status_code == 303
        assert signed.headers["location"] == "/findings?status=open"
        cookie = signed.headers["set-cookie"]
        assert "httponly" in cookie.lower()
        assert "samesite=strict" in cookie.lower()
        assert "secure" not in cookie.lower()  # plain HTTP: a Secure cookie would not come back
        assert "max-age=28800" in cookie.lower()  # session_minutes 480
        page = http.get("/findings")
        assert page.status_code == 200
        assert "alice (triage)" in page.text
        assert http.get("/api/findings").status_code == 200
        out = http.post("/logout", data={"csrf": form_token(http, "/findings")})
        assert out.status_code == 303
        assert out.headers["location"] == "/login"
        assert http.get("/findings").status_code == 303
        assert http.get("/api/findings").status_code == 401


def test_a_failed_sign_in_does_not_say_which_part_was_wrong(store: Store, people: Config) -> None:
    with client_of(people, store) as http:
        wrong_password = sign_in(http, "alice", "not the password")
        unknown_name = sign_in(http, "mallory", PASSWORD)
        for refused in (wrong_password, unknown_name):
            assert refused.status_code == 401
            assert FAILED in refused.text
        assert http.get("/findings").status_code == 303


def test_many_failed_sign_ins_from_one_address_make_it_wait(store: Store, people: Config) -> None:
    with client_of(people, store) as http:
        for _ in range(MAX_FAILURES):
            assert sign_in(http, "alice", "guess").status_code == 401
        waiting = sign_in(http, "alice", PASSWORD)
        assert waiting.status_code == 429
        assert "wait" in waiting.text
        assert http.get("/findings").status_code == 303


def test_logout_ends_the_session_also_for_a_copied_cookie(store: Store, people: Config) -> None:
    with client_of(people, store) as http:
        assert sign_in(http, "alice", PASSWORD).status_code == 303
        copied = dict(http.cookies)
        assert http.post("/logout", data={"csrf": form_token(http, "/findings")}).status_code == 303
        http.cookies.clear()
        http.cookies.update(copied)  # the cookie as it was before logout, kept elsewhere
        assert http.get("/api/findings").status_code == 401
        assert sign_in(http, "alice", PASSWORD).status_code == 303  # signing in again works
        assert http.get("/api/findings").status_code == 200


def test_signing_in_as_yourself_buys_no_guesses_at_another_name(
    store: Store, people: Config
) -> None:
    with client_of(people, store) as http:
        for _ in range(MAX_FAILURES - 1):
            assert sign_in(http, "alice", "guess").status_code == 401
        assert sign_in(http, "rita", PASSWORD).status_code == 303
        http.cookies.clear()
        assert sign_in(http, "alice", "guess").status_code == 401
        assert sign_in(http, "alice", PASSWORD).status_code == 429


def test_sign_ins_sent_at_once_cannot_pass_the_limit(store: Store, people: Config) -> None:
    """Attempts count from their start: 40 at once get at most MAX_FAILURES password checks."""
    attempts = 40
    with served(people, store) as base:
        clients = [httpx.Client(base_url=base, timeout=60) for _ in range(attempts)]
        try:
            tokens = [form_token(http) for http in clients]
            start = threading.Barrier(attempts)
            codes: list[int] = []

            def attempt(http: httpx.Client, token: str) -> None:
                """One wrong password, sent when every client is ready."""
                start.wait()
                fields = {"csrf": token, "name": "alice", "password": "guess"}
                codes.append(http.post("/login", data=fields).status_code)

            threads = [
                threading.Thread(target=attempt, args=pair)
                for pair in zip(clients, tokens, strict=True)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            for http in clients:
                http.close()
    assert sorted(set(codes)) == [401, 429]
    assert codes.count(401) == MAX_FAILURES


def test_sign_in_goes_back_only_to_this_console(store: Store, people: Config) -> None:
    with client_of(people, store) as http:
        for elsewhere in ("//attacker.example/", "https://attacker.example/", "/\\attacker"):
            http.cookies.clear()
            signed = sign_in(http, "alice", PASSWORD, elsewhere)
            assert signed.status_code == 303
            assert signed.headers["location"] == "/findings"


def test_a_post_without_the_form_token_is_refused(store: Store, people: Config) -> None:
    with client_of(people, store) as http:
        assert http.post("/login", data={"name": "alice", "password": PASSWORD}).status_code == 403
        assert sign_in(http, "alice", PASSWORD).status_code == 303
        for data in ({}, {"csrf": "forged"}):
            refused = http.post("/logout", data=data)
            assert refused.status_code == 403
            assert "token" in refused.text
        assert http.get("/findings").status_code == 200  # still signed in


def test_a_read_user_reads_but_may_not_acknowledge(store: Store, people: Config) -> None:
    with client_of(people, store) as http:
        assert sign_in(http, "rita", PASSWORD).status_code == 303
        page = http.get("/findings")
        assert page.status_code == 200
        assert "rita (read)" in page.text
        refused = http.post(
            "/findings/acknowledge",
            data={
                "csrf": form_token(http, "/findings"),
                "rule": "open-relay",
                "address": "10.0.0.1",
            },
        )
        assert refused.status_code == 403
        assert "rita may read but not triage" in refused.text
        # The same post from a triage user gets past the gate (no such finding: 404).
        http.cookies.clear()
        assert sign_in(http, "alice", PASSWORD).status_code == 303
        allowed = http.post(
            "/findings/acknowledge",
            data={
                "csrf": form_token(http, "/findings"),
                "rule": "open-relay",
                "address": "10.0.0.1",
            },
        )
        assert allowed.status_code == 404


def test_a_bearer_token_gives_its_level(store: Store, people: Config) -> None:
    with client_of(people, store) as http:
        signed = {"Authorization": f"Bearer {TOKEN}"}
        assert http.get("/api/findings", headers=signed).status_code == 200
        page = http.get("/findings", headers=signed)
        assert page.status_code == 200
        assert "nightly (read)" in page.text
        acknowledge = {"rule": "open-relay", "address": "10.0.0.1"}
        assert (
            http.post("/findings/acknowledge", headers=signed, data=acknowledge).status_code == 403
        )
        for wrong in (f"Bearer {TOKEN}x", "Bearer", f"Basic {TOKEN}"):
            refused = http.get("/api/findings", headers={"Authorization": wrong})
            assert refused.status_code == 401, wrong
            assert refused.json()["error"] == "the Authorization header's token is not known"


def test_with_tls_the_session_cookie_is_secure(
    store: Store, people: Config, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path, "console", address="127.0.0.1")
    config = people.model_copy(
        update={"serve": people.serve.model_copy(update={"cert": str(cert), "key": str(key)})}
    )
    trusting = ssl.create_default_context(cafile=str(cert))
    with client_of(config, store, verify=trusting) as http:
        assert str(http.base_url).startswith("https://")
        signed = sign_in(http, "alice", PASSWORD)
        assert signed.status_code == 303
        assert "; secure" in signed.headers["set-cookie"].lower()
        assert http.get("/findings").status_code == 200


@pytest.mark.parametrize(
    ("serve", "said"),
    [
        ('bind = "localhost:80"', "serve.bind: 'localhost:80' is not ADDR:PORT"),
        ('bind = "::1:8080"', "is not ADDR:PORT like 127.0.0.1:8080 or [::1]:8080"),
        ('bind = "127.0.0.1:0"', "is not ADDR:PORT"),
        ('cert = "c.pem"', "serve: give both cert and key for TLS, or neither"),
        ("session_minutes = 1", "serve.session_minutes: Input should be greater than or equal"),
        (
            '[[serve.users]]\nname = "a"\nlevel = "read"\npassword_hash = "plain"',
            "serve.users.password_hash: is not an argon2id hash",
        ),
        (
            '[[serve.users]]\nname = "a"\nlevel = "admin"\npassword_hash = "x"',
            "serve.users.level: Input should be 'read' or 'triage'",
        ),
        (
            '[[serve.tokens]]\nname = "a"\nlevel = "read"\ntoken_hash = "' + "A" * 64 + '"',
            "serve.tokens.token_hash: is not a SHA-256 hex digest",
        ),
        (
            '[[serve.tokens]]\nname = "a b"\nlevel = "read"\ntoken_hash = "' + "a" * 64 + '"',
            "serve.tokens.name: String should match pattern",
        ),
        (
            f'[[serve.tokens]]\nname = "a"\nlevel = "read"\ntoken_hash = "{"a" * 64}"\n'
            f'[[serve.tokens]]\nname = "a"\nlevel = "read"\ntoken_hash = "{"b" * 64}"',
            "two entries are named 'a'",
        ),
    ],
)
def test_bad_serve_settings_are_one_sentence(serve: str, said: str) -> None:
    with pytest.raises(UsageError) as refused:
        validate_config(tomllib.loads(f"[serve]\n{serve}"), "my.toml")
    assert str(refused.value).startswith("my.toml: ")
    assert said in str(refused.value)


def test_ipv6_binds_are_kept_in_brackets() -> None:
    config = validate_config(tomllib.loads('[serve]\nbind = "[::1]:8443"'), "my.toml")
    assert config.serve.bind == "[::1]:8443"


def test_tls_files_are_checked_when_the_config_loads(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "console")
    other_cert, _ = self_signed(tmp_path, "other")
    cases = {
        f'cert = "{cert}"\nkey = "{tmp_path / "missing.pem"}"': "serve.key: ",
        f'cert = "{key}"\nkey = "{key}"': "serve.cert, serve.key: not a certificate and its key",
        f'cert = "{other_cert}"\nkey = "{key}"': "serve.cert, serve.key: not a certificate",
    }
    for serve, said in cases.items():
        with pytest.raises(UsageError) as refused:
            validate_config(tomllib.loads(f"[serve]\n{serve}"), "my.toml")
        assert str(refused.value).startswith(f"my.toml: {said}")
    good = validate_config(tomllib.loads(f'[serve]\ncert = "{cert}"\nkey = "{key}"'), "my.toml")
    assert good.serve.cert == str(cert)


def test_adduser_prints_an_entry_that_loads_and_verifies(tmp_path: Path) -> None:
    made = subprocess.run(
        [*ROLECALL, "serve", "adduser", "carol", "--level", "triage", "--password-stdin"],
        input=PASSWORD + "\n",
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert PASSWORD not in made.stdout
    config = validate_config(tomllib.loads(made.stdout), "pasted")
    assert [(user.name, user.level) for user in config.serve.users] == [("carol", "triage")]
    assert config.serve.users[0].password_hash.startswith("$argon2id$")
    accounts = Accounts.of(config.serve)
    assert accounts.check_password("carol", PASSWORD) is not None
    assert accounts.check_password("carol", PASSWORD + "!") is None


@pytest.mark.parametrize(
    ("args", "stdin", "said"),
    [
        (["carol", "--level", "triage", "--password-stdin"], "short\n", "shorter than 8"),
        (["bad name", "--level", "read", "--password-stdin"], PASSWORD + "\n", "NAME 'bad name'"),
        (["carol", "--level", "admin", "--password-stdin"], PASSWORD + "\n", "admin"),
    ],
)
def test_adduser_refuses_bad_input(tmp_path: Path, args: list[str], stdin: str, said: str) -> None:
    made = subprocess.run(
        [*ROLECALL, "serve", "adduser", *args],
        input=stdin,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 2
    assert said in made.stderr
    assert made.stdout == ""


def test_addtoken_prints_the_token_once_and_an_entry_that_admits_it(
    tmp_path: Path, store: Store
) -> None:
    made = rolecall("serve", "addtoken", "siem", "--level", "read", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    token = made.stderr.strip().splitlines()[-1]
    assert len(token) >= 43
    assert token not in made.stdout
    config = validate_config(tomllib.loads(made.stdout), "pasted")
    assert config.serve.tokens[0].token_hash == token_digest(token)
    with client_of(config, store) as http:
        answer = http.get("/api/findings", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200
        assert http.get("/api/findings").status_code == 401


def _refused_connection(host: str, port: int) -> bool:
    """Whether nothing listens on host:port."""
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) != 0


def test_serve_refuses_a_non_loopback_bind_without_users(tmp_path: Path, db_path: Path) -> None:
    Store.open(str(db_path)).close()
    port = free_port("127.0.0.1")
    # 0.0.0.0 takes in every address, loopback too: the refusal comes before any bind.
    refused = rolecall("--db", str(db_path), "serve", "--bind", f"0.0.0.0:{port}", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1
    assert "add [[serve.users]]" in refused.stderr
    assert "[[serve.tokens]]" in refused.stderr
    assert _refused_connection("127.0.0.1", port)


def _wait_listening(proc: subprocess.Popen[str], host: str, port: int) -> None:
    """Wait until the served console accepts connections (or the process ends)."""
    deadline = time.monotonic() + 30
    while _refused_connection(host, port):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "rolecall serve did not start listening"
        time.sleep(0.05)


def test_rolecall_serve_serves_and_stops_on_sigterm(
    tmp_path: Path, db_path: Path, people: Config
) -> None:
    Store.open(str(db_path)).close()
    user = people.serve.users[0]
    (tmp_path / "rolecall.toml").write_text(
        f'[[serve.users]]\nname = "{user.name}"\nlevel = "{user.level}"\n'
        f'password_hash = "{user.password_hash}"\n'
    )
    host = "127.0.0.77"
    port = free_port(host)
    proc = subprocess.Popen(
        [*ROLECALL, "--db", str(db_path), "serve", "--bind", f"{host}:{port}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_listening(proc, host, port)
        with httpx.Client(base_url=f"http://{host}:{port}", timeout=30) as http:
            assert http.get("/findings").status_code == 303
            login = http.get("/login")
            assert login.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
            assert sign_in(http, "alice", PASSWORD).status_code == 303
            assert http.get("/findings").status_code == 200
        again = rolecall("--db", str(db_path), "serve", "--bind", f"{host}:{port}", cwd=tmp_path)
        assert again.returncode == 1
        assert (
            again.stderr
            == f"rolecall: {host}:{port} is in use by another program: give --bind another port\n"
        )
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "console stopped" in err
        assert _refused_connection(host, port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
