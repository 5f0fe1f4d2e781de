"""Swagger UI in a real browser: Authorize with the password flow, then call a protected API."""

import pytest
from playwright.sync_api import Page, expect

from tests.support import LiveServer


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
    page: Page, web: LiveServer, location: str
) -> None:
    tenant = web.tenant()
    errors: list[str] = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )

    authorize(page, web, tenant, location)
    body = call_me(page)

    assert tenant.operator.email in body
    assert errors == []
