"""In a real browser: sessions and tokens revoked, passwords changed, the audit trail filtered,
error pages."""

from datetime import UTC, datetime

import httpx
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import new_context, sign_in
from tests.support import LiveServer
from tests.test_web_audit import long_history


def me(web: LiveServer, token: str) -> int:
    response = httpx.get(
        f"{web.url}/authentication/v1/me", headers={"Authorization": f"Bearer {token}"}
    )
    return response.status_code


def test_operator_revokes_a_token_on_the_sessions_tab_and_the_api_refuses_it(
    page: Page, web: LiveServer
) -> None:
    tenant = web.tenant()
    doomed, kept = web.access_token(tenant), web.access_token(tenant)
    assert me(web, doomed) == 200
    sign_in(page, tenant.operator)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="User Settings").click()
    page.get_by_role("navigation", name="User Settings sections").get_by_role(
        "link", name="Sessions"
    ).click()
    row = page.get_by_role("row").filter(has_text=f"…{doomed[-6:]}")
    expect(row).to_contain_text("Token endpoint")
    expect(page.get_by_text(doomed)).to_have_count(0)
    row.get_by_role("button", name="Revoke").click()
    confirm = page.get_by_role("dialog")
    expect(confirm).to_contain_text("stop working at once")
    confirm.get_by_role("button", name="Revoke token").click()

    expect(page.get_by_text("The token was revoked.")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text=f"…{doomed[-6:]}")).to_have_count(0)
    assert me(web, doomed) == 401
    assert me(web, kept) == 200


def test_cancelling_the_confirmation_keeps_the_token(page: Page, web: LiveServer) -> None:
    tenant = web.tenant()
    token = web.access_token(tenant)
    sign_in(page, tenant.operator)
    page.goto("/settings/user/sessions")

    page.get_by_role("button", name=f"Revoke the token ending {token[-6:]}").click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()

    expect(page.get_by_role("button", name=f"Revoke the token ending {token[-6:]}")).to_be_focused()
    assert me(web, token) == 200


def test_admin_revokes_an_operators_token_from_users(page: Page, web: LiveServer) -> None:
    tenant = web.tenant()
    token = web.access_token(tenant)
    sign_in(page, tenant.admin)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Users").click()
    page.get_by_role("row").filter(has_text=tenant.operator.email).get_by_role(
        "link", name="1 token"
    ).click()
    expect(page.get_by_role("heading", name="Tokens of Operator")).to_be_visible()
    page.get_by_role("button", name=f"Revoke the token ending {token[-6:]}").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke token").click()

    expect(page.get_by_text("The token was revoked.")).to_be_visible()
    expect(page.get_by_text("No access tokens are in use.")).to_be_visible()
    assert me(web, token) == 401


def test_admin_forces_a_password_change_and_the_operator_is_signed_out(
    chromium: Browser, page: Page, web: LiveServer
) -> None:
    tenant = web.tenant()
    token = web.access_token(tenant)
    operator_context = new_context(chromium, web)
    operator_page = operator_context.new_page()
    sign_in(operator_page, tenant.operator)

    sign_in(page, tenant.admin)
    page.goto("/users")
    row = page.get_by_role("row").filter(has_text=tenant.operator.email)
    row.get_by_role("button", name="Force password change").click()
    confirm = page.get_by_role("dialog")
    expect(confirm).to_contain_text("signed out everywhere")
    confirm.get_by_role("button", name="Force password change").click()
    expect(page.get_by_text(f"New password for {tenant.operator.email}.")).to_be_visible()
    password = page.locator("#new-password").input_value()

    operator_page.goto("/settings/user")
    expect(operator_page.get_by_text("Your session has ended.")).to_be_visible()
    assert me(web, token) == 401
    tenant.operator.password = password
    sign_in(operator_page, tenant.operator)
    operator_context.close()


def test_operator_changes_their_own_password_and_stays_signed_in(
    page: Page, web: LiveServer
) -> None:
    tenant = web.tenant()
    token = web.access_token(tenant)
    new = "correct-horse-battery-staple"
    sign_in(page, tenant.operator)
    page.goto("/settings/user")

    page.get_by_label("Current password").fill(tenant.operator.password)
    page.get_by_label("New password", exact=True).fill(new)
    page.get_by_label("Confirm new password").fill(new)
    page.get_by_role("button", name="Change password").click()
    page.get_by_role("dialog").get_by_role("button", name="Change password").click()

    expect(page.get_by_text("Your password was changed.")).to_be_visible()
    expect(page.get_by_role("heading", name="User Settings")).to_be_visible()
    assert me(web, token) == 401
    page.get_by_role("button", name="Sign out").click()
    tenant.operator.password = new
    sign_in(page, tenant.operator)


def test_admin_filters_the_audit_trail_with_the_keyboard(page: Page, web: LiveServer) -> None:
    tenant = web.tenant()
    web.access_token(tenant)  # token.issue for the operator
    sign_in(page, tenant.admin)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit trail").click()
    expect(page.locator("#events tbody tr").first).to_be_visible()

    page.get_by_label("Event", exact=True).select_option("token.issue")
    page.get_by_label("Operator").select_option(str(tenant.operator.id))
    page.get_by_role("button", name="Apply filters").press("Enter")

    rows = page.locator("#events tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Access token issued")
    expect(rows.first).to_contain_text(tenant.operator.email)
    expect(page.get_by_label("Event", exact=True)).to_have_value("token.issue")
    page.get_by_role("link", name="Clear").click()
    expect(page.get_by_label("Event", exact=True)).to_have_value("")


def test_admin_pages_through_the_audit_trail_and_back(page: Page, web: LiveServer) -> None:
    tenant = web.tenant()
    long_history(web, tenant, 120, newest=datetime(2025, 5, 1, tzinfo=UTC))
    sign_in(page, tenant.admin)
    page.goto("/audit")
    page.get_by_label("Event", exact=True).select_option("policy.change")
    page.get_by_role("button", name="Apply filters").click()
    rows = page.locator("#events tbody tr")
    pager = page.get_by_role("navigation", name="Pages of events")

    expect(rows.first).to_contain_text("step-0000")
    expect(pager.get_by_role("link", name="Newer events")).to_have_count(0)
    pager.get_by_role("link", name="Older events").click()
    expect(rows.first).to_contain_text("step-0050")
    pager.get_by_role("link", name="Older events").click()
    expect(rows).to_have_count(20)
    expect(rows.last).to_contain_text("step-0119")
    expect(pager.get_by_role("link", name="Older events")).to_have_count(0)
    expect(page.get_by_label("Event", exact=True)).to_have_value("policy.change")
    pager.get_by_role("link", name="Newer events").click()
    expect(rows.first).to_contain_text("step-0050")
    expect(rows.last).to_contain_text("step-0099")
    pager.get_by_role("link", name="Newest events").click()
    expect(rows.first).to_contain_text("step-0000")
    expect(rows).to_have_count(50)


def test_a_mistyped_address_shows_the_404_page_with_the_way_back(
    page: Page, web: LiveServer
) -> None:
    tenant = web.tenant()
    signed_out = page.goto("/authentication/v1/mee")
    assert signed_out is not None and signed_out.status == 404
    expect(page.get_by_role("heading", name="Not Found")).to_be_visible()
    expect(page.get_by_text("There is no page at this address.")).to_be_visible()
    expect(page.get_by_role("link", name="Go to sign-in")).to_be_visible()

    sign_in(page, tenant.operator)
    for address in ("/no-such-address", "/settings/no-such-page"):
        signed_in = page.goto(address)
        assert signed_in is not None and signed_in.status == 404
        expect(page.get_by_role("heading", name="Not Found")).to_be_visible()
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()
        expect(page.get_by_role("link", name="Go to sign-in")).to_have_count(0)
    page.get_by_role("link", name="Go to Home").click()
    page.wait_for_url("**/home")
