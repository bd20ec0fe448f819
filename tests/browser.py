"""Shared by the browser tests: headless Chromium through Playwright (Debian's
/usr/bin/chromium), screenshots, and logging in. conftest.py loads the fixture."""

import os
import tempfile
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
# Outside the checkout's var/, which the tests leave alone; kept after the run, to look at.
ARTIFACTS = Path(tempfile.gettempdir()) / "adu-test-artifacts"
# pytestmark of every browser test module.
BROWSER_TEST = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]


@pytest.fixture
def browser_page(monkeypatch):
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the test's own ORM calls
    # are still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            # No background traffic: the network here is closed, as at our users'.
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        context = browser.new_context(accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(20000)
        # The browser reports each thing the Content-Security-Policy blocked on the console.
        blocked = []
        page.on(
            "console",
            lambda message: (
                blocked.append(message.text) if "Content Security Policy" in message.text else None
            ),
        )
        yield page
        browser.close()
    assert not blocked, f"the Content-Security-Policy blocked: {blocked}"


def shot(page, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def log_in(page, username, password):
    """Fill in and send the login form the page shows; waits for the page it leads to."""
    login_url = page.url
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("main button[type=submit]")
    page.wait_for_url(lambda url: url != login_url)
