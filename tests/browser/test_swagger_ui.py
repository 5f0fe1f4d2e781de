"""Swagger UI in a real browser: Authorize with the password flow, then call a protected API."""

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.support import LiveServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def swagger_browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(swagger_browser: Browser) -> Iterator[Page]:
    context = swagger_browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.console_errors = errors  # type: ignore[attr-defined]
    yield page
    context.close()


def authorize(page: Page, live: LiveServer, tenant, location: str) -> None:
    page.goto(live.url + "/docs")
    page.get_by_role("button", name="Authorize").first.click()
    dialog = page.locator(".modal-ux")
    dialog.locator("#oauth_username").fill(tenant.operator.email)
    dialog.locator("#oauth_password").fill(tenant.operator.password)
    dialog.locator("#password_type").select_option(label=location)
    dialog.locator("#client_id_password").fill(tenant.client_id)
    dialog.locator("#client_secret_password").fill(tenant.primary_secret)
    dialog.locator("button.modal-btn.authorize").click()
    expect(dialog.get_by_role("button", name="Remove authorization")).to_be_visible()
    dialog.locator("button.btn-done").click()


def call_me(page: Page) -> str:
    operation = page.locator("#operations-Authentication-me_authentication_v1_me_get")
    operation.locator(".opblock-summary").click()
    if operation.get_by_role("button", name="Try it out").count():
        operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    response = operation.locator(".live-responses-table tbody tr.response")
    expect(response.locator(".response-col_status")).to_contain_text("200", timeout=10000)
    return response.locator(".response-col_description pre").first.inner_text()


@pytest.mark.parametrize("location", ["Authorization header", "Request body"])
def test_swagger_authorize_then_call_a_protected_api(
    page: Page, live: LiveServer, location: str, backend: str
) -> None:
    if backend != "sqlite":
        pytest.skip("browser tests run once, on SQLite")
    tenant = live.tenant()

    authorize(page, live, tenant, location)
    body = call_me(page)

    assert tenant.operator.email in body
    assert page.console_errors == []  # type: ignore[attr-defined]
