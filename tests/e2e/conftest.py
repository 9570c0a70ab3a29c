"""A real Chromium (Debian's package) driven by Playwright; never a browser download."""

from __future__ import annotations

import shutil

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="module")
def browser():
    """One Chromium per test file: Playwright's sync API keeps an asyncio loop running in
    this thread while it is open, and tests that run their own loop (tornado's test cases)
    may follow in the same process (xdist workers run whole files in random order)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


FAILED = pytest.StashKey[bool]()


@pytest.fixture
def page(browser, request, tmp_path):
    """A fresh browser page; when the test fails, its last screen is saved next to the
    test's files (the path is printed) for whoever reads the failure."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    if request.node.stash.get(FAILED, False):
        shot = tmp_path / "failure.png"
        try:
            page.screenshot(path=str(shot))
            print(f"screenshot of the failure: {shot}")
        except Exception as e:  # the page may be gone with the failure
            print(f"no screenshot of the failure: {e}")
    context.close()
