"""Browser fixtures: one erpauth server on SQLite and one headless chromium for the session."""

import os
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.browser.chromium import CHROMIUM, launch
from tests.support import LiveServer, Operator, live_server, make_settings

VIEWPORT = {"width": 1280, "height": 860}
expect.set_options(timeout=10_000)


@pytest.fixture(scope="session")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = make_settings(tmp_path_factory.mktemp("browser"), None)
    with live_server(settings) as server:
        yield server


# Per module, not per session: Playwright's sync API cannot run twice at once in one thread,
# so a module that starts its own (as the Swagger UI tests do) needs this one closed first.
@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        message = f"no chromium at {CHROMIUM}; `make browser` installs Debian's"
        if os.environ.get("ERPAUTH_TEST_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture
def context(chromium: Browser, web: LiveServer) -> Iterator[BrowserContext]:
    context = new_context(chromium, web)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def new_context(chromium: Browser, web: LiveServer) -> BrowserContext:
    context = chromium.new_context(base_url=web.url, viewport=VIEWPORT)
    context.set_default_timeout(10_000)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=web.url)
    return context


def sign_in(page: Page, operator: Operator) -> None:
    page.goto("/signin")
    page.get_by_label("E-mail").fill(operator.email)
    page.get_by_label("Password").fill(operator.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/home")
