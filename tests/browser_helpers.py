"""Debian's Chromium driven by Selenium for the browser tests: console log, screenshots.

The browser reaches nothing but loopback: every background service that would call
home is off, and every host name other than localhost resolves to nothing.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1280, 900)
OFFLINE_FLAGS = (
    "--headless=new",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-extensions",
    "--disable-sync",
    "--disable-client-side-phishing-detection",
    "--disable-features=OptimizationHints,MediaRouter,Translate,AutofillServerCommunication",
    "--metrics-recording-only",
    "--no-default-browser-check",
    "--no-first-run",
    "--no-pings",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.*",
)
"""Headless, and nothing fetched from anywhere but the pages' own loopback server."""


def browser_missing() -> str | None:
    """Why the browser tests cannot run here (Chromium or chromedriver missing), or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (path.is_file() and os.access(path, os.X_OK)):
            return f"{path} is missing (apt install {package})"
    return None


@contextmanager
def chromium(profile: Path) -> Iterator[WebDriver]:
    """A headless Chromium with its own profile directory, logging its console; quit after."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in OFFLINE_FLAGS:
        options.add_argument(flag)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(profile / "driver.log"))
    profile.mkdir(parents=True, exist_ok=True)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def skip_without_browser() -> None:
    """Skip the calling test, saying why, where Chromium or its driver is missing."""
    missing = browser_missing()
    if missing is not None:
        pytest.skip(f"no browser for the browser tests: {missing}")


@contextmanager
def browser_or_skip(tmp_path: Path) -> Iterator[WebDriver]:
    """A headless Chromium for one test (profile under ``tmp_path``), or the test skipped."""
    skip_without_browser()
    with chromium(tmp_path / "chromium-profile") as driver:
        yield driver


def console_log(driver: WebDriver) -> list[dict[str, Any]]:
    """The browser console's messages since the last call (errors, CSP violations, logs)."""
    entries: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[attr-defined]
    return entries


def assert_console_clean(driver: WebDriver) -> None:
    """Fail if a page logged anything (a script error, a CSP violation, a failed load).

    Messages of the browser's own pages (chrome://) do not count.
    """
    messages = [
        f"{entry['level']}: {entry['message']}"
        for entry in console_log(driver)
        if not entry["message"].startswith("chrome://")
    ]
    assert messages == [], "\n".join(messages)


def screenshot(driver: WebDriver, path: Path, min_colours: int = 8) -> Path:
    """Save a screenshot of the window at ``path`` and fail if it is blank (few colours)."""
    data = driver.get_screenshot_as_png()
    path.write_bytes(data)
    colours = png_colours(data)
    assert colours >= min_colours, f"{path} looks blank: {colours} distinct colours"
    return path


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}
"""Bytes per pixel of 8-bit PNGs by colour type: grey, RGB, grey+alpha, RGBA."""


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The (type, body) chunks of a PNG file."""
    assert data.startswith(PNG_SIGNATURE), "not a PNG file"
    offset = len(PNG_SIGNATURE)
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        yield kind, data[offset + 8 : offset + 8 + length]
        offset += 12 + length


def _paeth(a: int, b: int, c: int) -> int:
    """The PNG Paeth predictor of left a, up b and upper-left c."""
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(kind: int, line: bytes, prior: bytes, step: int) -> bytes:
    """One scanline with its PNG filter undone, given the line above (already undone)."""
    if kind == 0:
        return line
    if kind == 2:
        return bytes((x + b) & 255 for x, b in zip(line, prior, strict=True))
    out = bytearray(line)
    for i in range(len(out)):
        a = out[i - step] if i >= step else 0
        if kind == 1:
            out[i] = (out[i] + a) & 255
        elif kind == 3:
            out[i] = (out[i] + (a + prior[i]) // 2) & 255
        else:
            c = prior[i - step] if i >= step else 0
            out[i] = (out[i] + _paeth(a, prior[i], c)) & 255
    return bytes(out)


def png_colours(data: bytes, rows: int = 64) -> int:
    """Distinct pixel values in about ``rows`` scanlines spread over an 8-bit PNG's height."""
    header = b""
    compressed = bytearray()
    for kind, body in _png_chunks(data):
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            compressed += body
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header[:13])
    assert depth == 8, f"a PNG of {depth}-bit samples"
    assert colour in CHANNELS, f"a PNG of colour type {colour}"
    assert interlace == 0, "an interlaced PNG"
    step = CHANNELS[colour]
    stride = width * step
    raw = zlib.decompress(bytes(compressed))
    every = max(height // rows, 1)
    prior = bytes(stride)
    colours: set[bytes] = set()
    for y in range(height):
        start = y * (stride + 1)
        line = _unfilter(raw[start], raw[start + 1 : start + 1 + stride], prior, step)
        if y % every == 0:
            colours.update(line[x : x + step] for x in range(0, stride, step))
        prior = line
    return len(colours)
