"""In a real browser: an operator signs in and makes, copies, regenerates and deletes a token."""

import httpx
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.conftest import sign_in
from tests.support import LiveServer, Operator


def generate_through_the_sign_in_window(page: Page, operator: Operator, button: str) -> str:
    page.get_by_role("button", name=button).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Username")).to_be_focused()
    dialog.get_by_label("Username").fill(operator.email)
    dialog.get_by_label("Password").fill(operator.password)
    dialog.get_by_role("button", name="Sign In").click()
    expect(page.get_by_text("Copy your access token now.")).to_be_visible()
    return page.locator("#access-token").input_value()


def me(web: LiveServer, token: str) -> httpx.Response:
    return httpx.get(
        f"{web.url}/authentication/v1/me", headers={"Authorization": f"Bearer {token}"}
    )


def test_operator_signs_in_and_sees_the_navigation(page: Page, web: LiveServer) -> None:
    tenant = web.tenant()

    sign_in(page, tenant.operator)

    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Home")).to_have_attribute("aria-current", "page")
    expect(nav.get_by_role("link", name="User Settings")).to_be_visible()
    expect(nav.get_by_role("link", name="System Settings")).to_have_count(0)
    expect(nav.get_by_role("link", name="Users")).to_have_count(0)


def test_wrong_password_says_only_that_email_or_password_is_wrong(
    page: Page, web: LiveServer
) -> None:
    tenant = web.tenant()
    page.goto("/signin")
    page.get_by_label("E-mail").fill(tenant.operator.email)
    page.get_by_label("Password").fill("not-the-password-1")
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("alert")).to_have_text("The e-mail or password is wrong.")
    expect(page.get_by_label("E-mail")).to_have_value(tenant.operator.email)


def test_generate_copy_and_use_a_token_then_regenerate_and_delete(
    page: Page, web: LiveServer
) -> None:
    tenant = web.tenant()
    sign_in(page, tenant.operator)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="User Settings").click()
    expect(page.get_by_text("Access token is not configured for your account.")).to_be_visible()

    token = generate_through_the_sign_in_window(page, tenant.operator, "Generate Access Token")
    page.locator("#access-token ~ button", has_text="Copy to clipboard").click()
    expect(page.locator("#access-token ~ button")).to_contain_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == token
    assert me(web, copied).status_code == 200

    page.goto("/settings/user/api")
    expect(page.locator("#access-token")).to_have_value(f"…{token[-6:]}")
    expect(page.get_by_text(token)).to_have_count(0)

    new = generate_through_the_sign_in_window(page, tenant.operator, "Regenerate access token")
    assert new != token
    assert me(web, token).status_code == 401
    assert me(web, new).status_code == 200

    page.get_by_role("button", name="Delete Token").click()
    confirm = page.get_by_role("dialog")
    expect(confirm).to_contain_text("stop working")
    confirm.get_by_role("button", name="Cancel").click()
    expect(confirm).to_be_hidden()
    assert me(web, new).status_code == 200

    page.get_by_role("button", name="Delete Token").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete Token").click()
    expect(page.get_by_text("Your access token was deleted.")).to_be_visible()
    expect(page.get_by_role("button", name="Generate Access Token")).to_be_visible()
    assert me(web, new).status_code == 401


def test_sign_in_window_refuses_a_wrong_password_and_stays_open(
    page: Page, web: LiveServer
) -> None:
    tenant = web.tenant()
    sign_in(page, tenant.operator)
    page.goto("/settings/user/api")

    page.get_by_role("button", name="Generate Access Token").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Username").fill(tenant.operator.email)
    dialog.get_by_label("Password").fill("not-the-password-1")
    dialog.get_by_role("button", name="Sign In").click()

    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("alert")).to_have_text("The e-mail or password is wrong.")
    expect(dialog.get_by_label("Password")).to_be_focused()
    expect(page.locator("textarea#access-token")).to_have_count(0)


def test_the_token_can_be_made_with_the_keyboard_alone(page: Page, web: LiveServer) -> None:
    tenant = web.tenant()
    sign_in(page, tenant.operator)
    page.goto("/settings/user/api")

    generate = page.get_by_role("button", name="Generate Access Token")
    generate.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("dialog")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(generate).to_be_focused()

    page.keyboard.press("Enter")
    page.keyboard.type(tenant.operator.email)
    page.keyboard.press("Tab")
    page.keyboard.type(tenant.operator.password)
    page.keyboard.press("Enter")

    expect(page.get_by_text("Copy your access token now.")).to_be_visible()
    assert me(web, page.locator("#access-token").input_value()).status_code == 200


def test_operator_without_api_permission_sees_why_and_no_button(
    page: Page, web: LiveServer
) -> None:
    tenant = web.tenant()
    clerk = web.add_operator(tenant, "clerk", api_permission=False)
    sign_in(page, clerk)
    page.goto("/settings/user/api")

    expect(page.get_by_text("You do not have API permission")).to_be_visible()
    expect(page.get_by_role("button", name="Generate Access Token")).to_have_count(0)
    expect(page.get_by_role("button", name="Regenerate access token")).to_have_count(0)


def test_session_cookie_is_hidden_from_scripts_and_same_site_lax(
    context: BrowserContext, page: Page, web: LiveServer
) -> None:
    tenant = web.tenant()
    sign_in(page, tenant.operator)

    [cookie] = [c for c in context.cookies() if c["name"] == "erpauth_session"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["secure"] is False  # served over plain http here; https sets Secure
    assert cookie["expires"] == -1  # gone when the browser closes
    assert "erpauth_session" not in page.evaluate("document.cookie")


def test_form_posted_from_another_origin_is_refused(
    context: BrowserContext, page: Page, web: LiveServer
) -> None:
    tenant = web.tenant()
    sign_in(page, tenant.operator)
    page.goto("/settings/user/api")
    token = generate_through_the_sign_in_window(page, tenant.operator, "Generate Access Token")

    # Same site (same host, other port), so the browser does send the session cookie:
    # only the missing CSRF token stops the request.
    attacker = "http://127.0.0.1:9/prize"
    context.route(
        attacker,
        lambda route: route.fulfill(
            content_type="text/html",
            body=(
                f'<form method="post" action="{web.url}/settings/user/api/token/delete">'
                '<button type="submit">Claim your prize</button></form>'
            ),
        ),
    )
    page.goto(attacker)
    page.get_by_role("button", name="Claim your prize").click()

    expect(page.get_by_role("heading", name="Request refused")).to_be_visible()
    assert me(web, token).status_code == 200


def test_tampered_csrf_token_is_refused_with_a_page(page: Page, web: LiveServer) -> None:
    tenant = web.tenant()
    sign_in(page, tenant.operator)

    page.evaluate(
        "document.querySelector('form[action=\"/signout\"] [name=csrf_token]').value = 'forged'"
    )
    page.get_by_role("button", name="Sign out").click()

    expect(page.get_by_role("heading", name="Request refused")).to_be_visible()
    page.goto("/home")
    expect(page).to_have_url(f"{web.url}/home")


def test_sign_out_returns_to_the_sign_in_page(page: Page, web: LiveServer) -> None:
    tenant = web.tenant()
    sign_in(page, tenant.operator)

    page.get_by_role("button", name="Sign out").click()

    expect(page.get_by_text("You are signed out.")).to_be_visible()
    page.goto("/settings/user/api")
    expect(page).to_have_url(f"{web.url}/signin?next=%2Fsettings%2Fuser%2Fapi")


def test_reloading_the_page_that_shows_a_new_token_does_not_make_another(
    page: Page, web: LiveServer
) -> None:
    tenant = web.tenant()
    sign_in(page, tenant.operator)
    page.goto("/settings/user/api")
    token = generate_through_the_sign_in_window(page, tenant.operator, "Generate Access Token")
    expect(page).to_have_url(f"{web.url}/settings/user/api")

    page.reload()

    # The page is fetched again, not the form sent again: the token shown once still works.
    expect(page.locator("#access-token")).to_have_value(f"…{token[-6:]}")
    expect(page.get_by_text("Copy your access token now.")).to_have_count(0)
    assert me(web, token).status_code == 200
