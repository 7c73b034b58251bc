"""Fixtures for the customer page tests: Debian's Chromium driven by playwright.

The browser is the system one (``/usr/bin/chromium``, Debian's ``chromium`` package);
playwright's own browser download is never used. Each test gets a new browser context
(fresh cookies and storage) and its own sandbox server; playwright starts Chromium with
a new temporary profile directory, removed when the browser closes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.needs import missing
from support.servers import ROOT, RunningServer, running_server

CHROMIUM = Path("/usr/bin/chromium")
# Headless, and quiet on a machine with no outside network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "test-output" / "screenshots"
TIMEOUT_MS = 15_000
VIEWPORTS: dict[str, ViewportSize] = {
    "desktop": {"width": 1000, "height": 800},
    "phone": {"width": 390, "height": 844},
    # The narrowest phone the page is checked at (WCAG reflow and the audits).
    "narrow": {"width": 375, "height": 812},
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        missing(
            f"{CHROMIUM} is missing: install Debian's chromium package "
            "(apt-get install chromium) to run the browser tests; .ci/run does this"
        )
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningServer]:
    """A sandbox shop on loopback: FastAPI unless the test parametrizes ``server``."""
    kind = getattr(request, "param", "fastapi")
    with running_server(kind, tmp_path / "data") as running:
        yield running


@pytest.fixture
def viewport(request: pytest.FixtureRequest) -> ViewportSize:
    """The window size: desktop unless the test parametrizes ``viewport`` ("phone")."""
    return VIEWPORTS[getattr(request, "param", "desktop")]


@pytest.fixture
def page(browser: Browser, server: RunningServer, viewport: ViewportSize) -> Iterator[Page]:
    """A fresh page; closed before its server stops (it depends on ``server``)."""
    context = browser.new_context(viewport=viewport, base_url=server.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield opened
    finally:
        context.close()
        # An order's event stream only notices a gone client when it next writes (a
        # change or the 15 s heartbeat), and the server waits for it on shutdown: let
        # every open order expire so the streams end now.
        server.http.post("/sandbox/clock/advance", json={"seconds": 3660})
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def screenshot() -> Callable[[Page, str], Path]:
    """Saves a full-page screenshot under test-output/screenshots/ (git-ignored)."""

    def save(page: Page, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save
