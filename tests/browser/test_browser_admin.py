"""In a real browser: a System Administrator manages the API client, token policy and users."""

import time
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

import erpauth.web.users
from erpauth.storage.models import Company
from tests.browser.conftest import new_context, sign_in
from tests.support import TOKEN_PATH, LiveServer, Tenant


def password_grant(web: LiveServer, tenant: Tenant, secret: str) -> int:
    response = httpx.post(
        web.url + TOKEN_PATH,
        auth=(tenant.client_id, secret),
        data={
            "grant_type": "password",
            "username": tenant.operator.email,
            "password": tenant.operator.password,
        },
    )
    return response.status_code


def test_admin_shows_copies_and_regenerates_a_client_secret(page: Page, web: LiveServer) -> None:
    tenant = web.tenant()
    sign_in(page, tenant.admin)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="System Settings").click()
    expect(page.locator("#api-enabled")).to_have_text("Yes")
    expect(page.locator("#client-id")).to_have_value(tenant.client_id)
    expect(page.get_by_text(tenant.primary_secret)).to_have_count(0)

    page.get_by_role("button", name="Show primary client secret").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("Password")).to_be_focused()
    dialog.get_by_label("Password").fill(tenant.admin.password)
    dialog.get_by_role("button", name="Show secret").click()
    expect(page.locator("#secret-primary")).to_have_value(tenant.primary_secret)

    page.locator("#primary-secret").get_by_role("button", name="Copy to clipboard").click()
    assert page.evaluate("navigator.clipboard.readText()") == tenant.primary_secret

    page.get_by_role("button", name="Regenerate key for the secondary client secret").click()
    confirm = page.get_by_role("dialog")
    expect(confirm).to_contain_text("will stop working")
    confirm.get_by_role("button", name="Regenerate key").click()
    expect(page.get_by_text("The secondary client secret was regenerated.")).to_be_visible()

    assert password_grant(web, tenant, tenant.secondary_secret) == 401
    assert password_grant(web, tenant, tenant.primary_secret) == 200


def test_show_secret_with_a_wrong_password_reveals_nothing(page: Page, web: LiveServer) -> None:
    tenant = web.tenant()
    sign_in(page, tenant.admin)
    page.goto("/settings/system/api")

    page.get_by_role("button", name="Show secondary client secret").click()
    page.get_by_role("dialog").get_by_label("Password").fill("not-the-password-1")
    page.get_by_role("dialog").get_by_role("button", name="Show secret").click()

    expect(page.get_by_role("dialog").get_by_role("alert")).to_have_text("The password is wrong.")
    expect(page.locator("#secret-secondary")).not_to_have_value(tenant.secondary_secret)


def test_admin_changes_token_expiry_and_new_tokens_never_expire(
    chromium: Browser, page: Page, web: LiveServer
) -> None:
    tenant = web.tenant(token_expiry_hours=24)
    sign_in(page, tenant.admin)
    page.goto("/settings/system/api")

    page.get_by_label("Token expiry").fill("0")
    page.get_by_label("Call limit").fill("120")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Token expiry and call limit saved.")).to_be_visible()
    expect(page.get_by_label("Token expiry")).to_have_value("0")
    with web.services.database.session() as session:
        company = session.get(Company, tenant.company_id)
        assert (company.token_expiry_hours, company.call_limit_per_minute) == (0, 120)

    operator_context = new_context(chromium, web)
    operator = operator_context.new_page()
    sign_in(operator, tenant.operator)
    operator.goto("/settings/user/api")
    operator.get_by_role("button", name="Generate Access Token").click()
    operator.get_by_role("dialog").get_by_label("Username").fill(tenant.operator.email)
    operator.get_by_role("dialog").get_by_label("Password").fill(tenant.operator.password)
    operator.get_by_role("dialog").get_by_role("button", name="Sign In").click()
    expect(operator.get_by_label("Token Expires On")).to_have_value("Never Expires")
    operator_context.close()


def test_out_of_range_token_expiry_is_stopped_and_nothing_is_saved(
    page: Page, web: LiveServer
) -> None:
    tenant = web.tenant(token_expiry_hours=24)
    sign_in(page, tenant.admin)
    page.goto("/settings/system/api")

    page.get_by_label("Token expiry").fill("100000")
    page.get_by_role("button", name="Save").click()

    # The browser's own check speaks first; the page keeps what was typed and saves nothing.
    expect(page.get_by_label("Token expiry")).to_have_value("100000")
    assert page.get_by_label("Token expiry").evaluate("input => !input.validity.valid")
    with web.services.database.session() as session:
        assert session.get(Company, tenant.company_id).token_expiry_hours == 24


def test_admin_grants_api_permission_and_the_operator_then_generates_a_token(
    chromium: Browser, page: Page, web: LiveServer
) -> None:
    tenant = web.tenant()
    clerk = web.add_operator(tenant, "clerk", api_permission=False)
    clerk_context = new_context(chromium, web)
    clerk_page = clerk_context.new_page()
    sign_in(clerk_page, clerk)
    clerk_page.goto("/settings/user/api")
    expect(clerk_page.get_by_role("button", name="Generate Access Token")).to_have_count(0)

    sign_in(page, tenant.admin)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Users").click()
    row = page.get_by_role("row").filter(has_text=clerk.email)
    expect(row).to_contain_text("No")
    row.get_by_role("button", name="Grant API").click()
    expect(page.get_by_text("API permission granted.")).to_be_visible()

    clerk_page.reload()
    clerk_page.get_by_role("button", name="Generate Access Token").click()
    dialog = clerk_page.get_by_role("dialog")
    dialog.get_by_label("Username").fill(clerk.email)
    dialog.get_by_label("Password").fill(clerk.password)
    dialog.get_by_role("button", name="Sign In").click()
    token = clerk_page.locator("#access-token").input_value()
    clerk_context.close()

    response = httpx.get(
        f"{web.url}/authentication/v1/me", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    assert response.json()["operator"]["email"] == clerk.email


def test_admin_creates_an_operator_who_signs_in_with_the_shown_password(
    chromium: Browser, page: Page, web: LiveServer
) -> None:
    tenant = web.tenant()
    email = f"robin.{tenant.code.lower()}@example.com"
    sign_in(page, tenant.admin)
    page.goto("/users")

    page.get_by_role("button", name="Create operator").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("E-mail").fill(email)
    dialog.get_by_label("Name (optional)").fill("Robin Reyes")
    dialog.get_by_label("API permission").check()
    dialog.get_by_role("button", name="Create operator").click()

    expect(page.get_by_text(f"New password for {email}.")).to_be_visible()
    password = page.locator("#new-password").input_value()
    expect(page.get_by_role("row").filter(has_text=email)).to_contain_text("Robin Reyes")

    newcomer = new_context(chromium, web)
    newcomer_page = newcomer.new_page()
    newcomer_page.goto("/signin")
    newcomer_page.get_by_label("E-mail").fill(email)
    newcomer_page.get_by_label("Password").fill(password)
    newcomer_page.get_by_role("button", name="Sign in").click()
    expect(newcomer_page.get_by_role("heading", name="Welcome, Robin Reyes")).to_be_visible()
    newcomer.close()


def test_deactivated_operator_is_signed_out_in_their_browser(
    chromium: Browser, page: Page, web: LiveServer
) -> None:
    tenant = web.tenant()
    operator_context = new_context(chromium, web)
    operator_page = operator_context.new_page()
    sign_in(operator_page, tenant.operator)

    sign_in(page, tenant.admin)
    page.goto("/users")
    row = page.get_by_role("row").filter(has_text=tenant.operator.email)
    row.get_by_role("button", name="Deactivate").click()
    page.get_by_role("dialog").get_by_role("button", name="Deactivate").click()
    expect(page.get_by_text("The operator was deactivated")).to_be_visible()
    expect(row).to_contain_text("Inactive")

    operator_page.goto("/settings/user/api")
    expect(operator_page.get_by_text("Your session has ended.")).to_be_visible()
    operator_context.close()


def test_second_click_while_the_form_is_on_its_way_sends_nothing_more(
    page: Page, web: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = web.tenant()
    email = f"double.{tenant.code.lower()}@example.com"
    received: list[str] = []
    create = erpauth.web.users._create_unless_exists

    def slow_create(*args: Any, **kwargs: Any) -> str | None:
        received.append(email)
        time.sleep(0.5)  # keeps the first request on its way while the second click comes
        return create(*args, **kwargs)

    monkeypatch.setattr(erpauth.web.users, "_create_unless_exists", slow_create)
    sign_in(page, tenant.admin)
    page.goto("/users")
    page.get_by_role("button", name="Create operator").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("E-mail").fill(email)
    dialog.get_by_role("button", name="Create operator").evaluate(
        "button => { button.click(); setTimeout(() => button.click(), 100); }"
    )

    expect(page.get_by_text(f"New password for {email}.")).to_be_visible()
    assert received == [email]


def test_reloading_after_a_forced_password_change_keeps_the_password_shown(
    page: Page, web: LiveServer
) -> None:
    tenant = web.tenant()
    sign_in(page, tenant.admin)
    page.goto("/users")
    row = page.get_by_role("row").filter(has_text=tenant.operator.email)
    row.get_by_role("button", name="Force password change").click()
    page.get_by_role("dialog").get_by_role("button", name="Force password change").click()
    expect(page.get_by_text(f"New password for {tenant.operator.email}.")).to_be_visible()
    password = page.locator("#new-password").input_value()
    expect(page).to_have_url(f"{web.url}/users")

    page.reload()

    # The page is fetched again, not the form sent again: the password shown once still works.
    expect(page.get_by_role("heading", name="Users")).to_be_visible()
    expect(page.locator("#new-password")).to_have_count(0)
    response = httpx.post(
        web.url + TOKEN_PATH,
        auth=(tenant.client_id, tenant.primary_secret),
        data={"grant_type": "password", "username": tenant.operator.email, "password": password},
    )
    assert response.status_code == 200


def test_reloading_after_creating_an_operator_sends_nothing_again(
    page: Page, web: LiveServer
) -> None:
    tenant = web.tenant()
    email = f"reload.{tenant.code.lower()}@example.com"
    sign_in(page, tenant.admin)
    page.goto("/users")
    page.get_by_role("button", name="Create operator").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("E-mail").fill(email)
    dialog.get_by_role("button", name="Create operator").click()
    expect(page.get_by_text(f"New password for {email}.")).to_be_visible()

    page.reload()

    expect(page.get_by_role("row").filter(has_text=email)).to_be_visible()
    expect(page.get_by_text("exists already")).to_have_count(0)
    expect(page.locator("#new-password")).to_have_count(0)


def test_a_notice_is_shown_once_and_a_reload_does_not_show_it_again(
    page: Page, web: LiveServer
) -> None:
    tenant = web.tenant()
    sign_in(page, tenant.admin)
    page.goto("/settings/system/api")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Token expiry and call limit saved.")).to_be_visible()
    expect(page).to_have_url(f"{web.url}/settings/system/api")

    page.reload()

    expect(page.get_by_label("Token expiry")).to_be_visible()
    expect(page.get_by_text("Token expiry and call limit saved.")).to_have_count(0)


def test_system_settings_tabs_each_have_an_address_and_show_which_is_open(
    page: Page, web: LiveServer
) -> None:
    tenant = web.tenant()
    sign_in(page, tenant.admin)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="System Settings").click()
    tabs = page.get_by_role("navigation", name="System Settings sections")

    tabs.get_by_role("link", name="General").click()

    expect(page).to_have_url(f"{web.url}/settings/system/general")
    expect(tabs.get_by_role("link", name="General")).to_have_attribute("aria-current", "page")
    expect(tabs.get_by_role("link", name="API")).not_to_have_attribute("aria-current", "page")
    expect(page.get_by_text(tenant.code).first).to_be_visible()
    page.reload()
    expect(page).to_have_url(f"{web.url}/settings/system/general")


def test_second_administrator_forcing_a_password_change_is_told_the_first_won(
    chromium: Browser, page: Page, web: LiveServer
) -> None:
    tenant = web.tenant()
    other_context = new_context(chromium, web)
    other = other_context.new_page()
    for admin_page in (page, other):
        sign_in(admin_page, tenant.admin)
        admin_page.goto("/users")

    for admin_page in (page, other):
        row = admin_page.get_by_role("row").filter(has_text=tenant.operator.email)
        row.get_by_role("button", name="Force password change").click()
        admin_page.get_by_role("dialog").get_by_role("button", name="Force password change").click()

    expect(page.get_by_text(f"New password for {tenant.operator.email}.")).to_be_visible()
    expect(other.get_by_role("alert")).to_contain_text("changed by someone else just now")
    expect(other.locator("#new-password")).to_have_count(0)
    password = page.locator("#new-password").input_value()
    other_context.close()
    response = httpx.post(
        web.url + TOKEN_PATH,
        auth=(tenant.client_id, tenant.primary_secret),
        data={"grant_type": "password", "username": tenant.operator.email, "password": password},
    )
    assert response.status_code == 200
