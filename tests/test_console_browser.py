"""The console in a real browser: log in, filter, open a host, acknowledge; hostile text stays text.

Debian's Chromium driven by Selenium against the console served for real on loopback,
with a user configured so that every page asks for a login first.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from argon2 import PasswordHasher
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from rolecall.inventory.settings import DeriveSettings
from rolecall.orchestrator.config import Config, validate_config
from rolecall.probes.records import Service, SmtpTransaction
from tests.browser_helpers import (
    assert_console_clean,
    browser_or_skip,
    console_log,
    screenshot,
    skip_without_browser,
)
from tests.console_helpers import served
from tests.report_helpers import GROUPS, UNTIL, build_inventory

USER, PASSWORD = "analyst", "correct horse battery staple"
HOSTILE_HOST = "10.10.1.66"
HOSTILE_BANNER = "220 <script>alert(1)</script> ESMTP"
HOSTILE_SUBJECT = '"><img src=x onerror=alert(2)>'
WAIT = 15


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The console of a derived inventory with hostile text in it, login required; its URL."""
    skip_without_browser()
    db = tmp_path_factory.mktemp("console") / "inventory.db"
    store = build_inventory(db)
    seen = UNTIL - timedelta(days=1)
    with store.writer() as writer:
        writer.add_all(
            [
                Service(HOSTILE_HOST, 25, "tcp", "probe", seen, "smtp", banner=HOSTILE_BANNER),
                SmtpTransaction(
                    seen,
                    HOSTILE_HOST,
                    41000,
                    "203.0.113.25",
                    25,
                    "pcap",
                    mail_from="x@example.org",
                    rcpt_to=("victim@example.net",),
                    subject=HOSTILE_SUBJECT,
                ),
            ]
        )
    store.derive(DeriveSettings(groups=GROUPS, inside=("10.0.0.0/8", "192.168.0.0/16")))
    config = logins_required()
    try:
        with served(config, store) as base:
            yield base
    finally:
        store.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """A headless Chromium of its own for each test."""
    with browser_or_skip(tmp_path) as driver:
        yield driver


def logins_required() -> Config:
    """A config whose [serve] has one triage user, the password stored as an argon2 hash."""
    user = {"name": USER, "level": "triage", "password_hash": PasswordHasher().hash(PASSWORD)}
    return validate_config({"serve": {"users": [user]}}, "the browser test's config")


def wait_for(driver: WebDriver, what: str, done: Any) -> None:
    """Wait until ``done(driver)`` is true; fail naming ``what`` otherwise."""
    # A page being replaced leaves stale elements behind: look again.
    waiting = WebDriverWait(driver, WAIT, ignored_exceptions=(StaleElementReferenceException,))
    waiting.until(done, message=f"waited {WAIT} s for {what}")


def query_of(driver: WebDriver) -> dict[str, str]:
    """The query parameters of the page the browser shows."""
    return {key: values[-1] for key, values in parse_qs(urlsplit(driver.current_url).query).items()}


def log_in(driver: WebDriver, base: str) -> None:
    """Open the console, be sent to the login page, sign in and land on the findings."""
    driver.get(base + "/")
    wait_for(driver, "the login page", lambda d: urlsplit(d.current_url).path == "/login")
    password = driver.find_element(By.CSS_SELECTOR, "input[type=password]")
    form = password.find_element(By.XPATH, "./ancestor::form")
    name = form.find_element(By.CSS_SELECTOR, "input[type=text], input:not([type])")
    name.send_keys(USER)
    password.send_keys(PASSWORD)
    form.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]").click()
    wait_for(driver, "the findings after login", lambda d: "/findings" in d.current_url)
    assert_console_clean(driver)


def api(driver: WebDriver, path: str) -> Any:
    """GET a JSON twin from inside the page, with the page's session; the parsed body."""
    result = driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        fetch(arguments[0], {credentials: "same-origin"})
          .then(async (r) => done({status: r.status, body: await r.json()}))
          .catch((e) => done({status: 0, body: String(e)}));
        """,
        path,
    )
    assert result["status"] == 200, result
    return result["body"]


def choose(driver: WebDriver, field: str, value: str) -> None:
    """Set one filter of the findings form and wait for the filtered page."""
    element = driver.find_element(By.CSS_SELECTOR, f"form.filters [name={field}]")
    if element.tag_name == "select" and element.get_attribute("value") != value:
        # The console's own script submits the form when a select changes.
        Select(element).select_by_value(value)
    elif element.tag_name == "select":
        element.submit()
    else:
        element.clear()
        element.send_keys(value)
        element.submit()
    wait_for(driver, f"the page of {field}={value}", lambda d: query_of(d).get(field) == value)


def heading(driver: WebDriver) -> str:
    """The text of the page's first heading (empty while there is none)."""
    found = driver.find_elements(By.TAG_NAME, "h1")
    return found[0].text if found else ""


def finding_rows(driver: WebDriver) -> list[WebElement]:
    """The rows of the findings table."""
    return driver.find_elements(By.CSS_SELECTOR, "table tbody tr")


def ack_forms(driver: WebDriver) -> list[WebElement]:
    """The acknowledge forms of the page: forms that post a note."""
    return [
        form
        for form in driver.find_elements(By.CSS_SELECTOR, "form[method=post], form[method=POST]")
        if form.find_elements(By.CSS_SELECTOR, "[name=note]")
    ]


def hidden_fields(form: WebElement) -> dict[str, str]:
    """The hidden inputs of a form, by name."""
    return {
        str(field.get_attribute("name")): str(field.get_attribute("value"))
        for field in form.find_elements(By.CSS_SELECTOR, "input[type=hidden]")
    }


def test_login_filter_open_a_host_and_acknowledge(
    browser: WebDriver, console: str, tmp_path: Path
) -> None:
    log_in(browser, console)
    everything = api(browser, "/api/findings?status=all")
    rule = next(row["rule"] for row in everything["rows"] if row["status"] == "open")

    choose(browser, "status", "open")
    choose(browser, "rule", rule)
    assert query_of(browser)["status"] == "open"
    expected = api(browser, f"/api/findings?status=open&rule={rule}")
    rows = finding_rows(browser)
    assert len(rows) == min(expected["total"], expected["page_size"]) > 0
    assert all(rule in row.text for row in rows), [row.text for row in rows]
    assert_console_clean(browser)
    screenshot(browser, tmp_path / "findings.png")

    link = rows[0].find_element(By.CSS_SELECTOR, "a[href*='/hosts/']")
    address = link.text.strip()
    link.click()
    wait_for(browser, "the host page", lambda d: address in heading(d))
    assert urlsplit(browser.current_url).path == f"/hosts/{address}"
    assert rule in browser.find_element(By.TAG_NAME, "main").text
    assert_console_clean(browser)
    screenshot(browser, tmp_path / "host.png")

    browser.back()
    wait_for(browser, "the filtered findings again", lambda d: query_of(d).get("rule") == rule)
    form = ack_forms(browser)[0]
    fields = hidden_fields(form)
    assert fields.get("csrf"), fields
    note = "checked in the browser: a known relay"
    form.find_element(By.CSS_SELECTOR, "[name=note]").send_keys(note)
    form.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]").click()
    wait_for(browser, "the findings after acknowledging", lambda d: "/findings" in d.current_url)
    assert query_of(browser).get("rule") == rule  # back on the same filtered page

    browser.refresh()
    choose(browser, "status", "acknowledged")
    assert any(note in row.text for row in finding_rows(browser)), [
        row.text for row in finding_rows(browser)
    ]
    acknowledged = api(browser, f"/api/findings?status=acknowledged&rule={rule}")["rows"]
    assert [row["note"] for row in acknowledged] == [note]
    assert acknowledged[0]["status"] == "acknowledged"
    assert_console_clean(browser)


def assert_no_alert(driver: WebDriver) -> None:
    """Fail if a JavaScript alert is open."""
    try:
        text = driver.switch_to.alert.text
    except NoAlertPresentException:
        return
    pytest.fail(f"an alert ran: {text!r}")


def test_hostile_banner_and_subject_show_as_text(browser: WebDriver, console: str) -> None:
    log_in(browser, console)
    browser.get(f"{console}/hosts/{HOSTILE_HOST}")
    wait_for(browser, "the hostile host's page", lambda d: HOSTILE_HOST in d.title + d.page_source)
    assert_no_alert(browser)
    shown = browser.find_element(By.TAG_NAME, "main").text
    assert "<script>alert(1)</script>" in shown
    assert HOSTILE_SUBJECT in shown
    # Nothing of the data became an element: no inline script, only the console's own; no img.
    scripts = browser.execute_script(
        "return [...document.scripts].map((s) => s.src || s.textContent);"
    )
    assert scripts, "the page lost its script"
    assert all(src.startswith(f"{console}/static/") for src in scripts), scripts
    assert browser.find_elements(By.CSS_SELECTOR, "main img") == []
    assert_console_clean(browser)
    assert_no_alert(browser)


def test_a_post_without_the_form_token_is_refused(browser: WebDriver, console: str) -> None:
    log_in(browser, console)
    form = ack_forms(browser)[0]
    fields = hidden_fields(form)
    posted = browser.execute_async_script(
        """
        const [form, done] = [arguments[0], arguments[arguments.length - 1]];
        const body = new FormData(form);
        body.delete("csrf");
        body.set("note", "no token");
        fetch(form.action, {method: "POST", body, credentials: "same-origin", redirect: "manual"})
          .then((r) => done(r.status)).catch((e) => done(String(e)));
        """,
        form,
    )
    assert posted == 403
    # A crafted form of another page's making, without the token, is refused as well.
    browser.execute_script(
        """
        const form = document.createElement("form");
        form.method = "post";
        form.action = arguments[0].action;
        for (const [name, value] of Object.entries(arguments[1])) {
          if (name === "csrf") continue;
          const input = document.createElement("input");
          input.type = "hidden"; input.name = name; input.value = value;
          form.append(input);
        }
        document.body.append(form);
        form.submit();
        """,
        form,
        fields,
    )
    wait_for(
        browser, "the refusal page", lambda d: "token" in d.find_element(By.TAG_NAME, "body").text
    )
    # Nothing changed: no finding carries the note of either refused post.
    rows = api(browser, "/api/findings?status=all")["rows"]
    assert all(row["note"] != "no token" for row in rows)
    refusals = [entry["message"] for entry in console_log(browser)]
    assert refusals, "the refused posts left no trace in the console"
    assert all("403" in message for message in refusals), refusals
    browser.get(f"{console}/findings")
    assert_console_clean(browser)
