"""The browser tier: a real ``pgqueue web`` process on a real Postgres, driven by Debian's
Chromium through Playwright (the system browser by its path; Playwright's own browser download is
never used). ``PGQUEUE_WEB_SCREENSHOTS=1`` (``make web-screenshots``) saves each page's screenshot
into docs/web/ for the README; otherwise they go to the test's tmp_path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.support.console import REPO, ConsoleFactory

CHROMIUM = "/usr/bin/chromium"
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


@pytest.fixture
def consoles(tmp_path: Path) -> Iterator[ConsoleFactory]:
    factory = ConsoleFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: docs/web/ when asked for, else the test's tmp_path."""
    if os.environ.get("PGQUEUE_WEB_SCREENSHOTS") == "1":
        return REPO / "docs" / "web"
    return tmp_path
