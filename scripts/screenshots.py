"""Saves a screenshot of each web page into docs/screenshots/, from a fresh demo company.

Run from the repository root: ``.venv/bin/python scripts/screenshots.py``. It serves erpauth on
a loopback port with a throw-away SQLite database and drives Debian's chromium.
"""

import secrets
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import Page, sync_playwright  # noqa: E402
from tests.browser.chromium import launch  # noqa: E402
from tests.support import TOKEN_PATH, LiveServer, live_server, make_settings  # noqa: E402

from erpauth.demo import DEMO_ACCOUNT_CODE, DemoCredentials, ensure_demo  # noqa: E402
from erpauth.domain.companies import get_company  # noqa: E402
from erpauth.domain.operators import create_operator  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
VIEWPORT = {"width": 1280, "height": 820}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as data,
        live_server(make_settings(Path(data), None)) as live,
    ):
        demo = ensure_demo(live.services)
        clerk_password = secrets.token_urlsafe(16)
        with live.services.database.session() as session:
            create_operator(
                session,
                live.services.hasher,
                get_company(session, DEMO_ACCOUNT_CODE),
                email="casey.clerk@demo.example",
                password=clerk_password,
                display_name="Casey Clerk",
            )

        with sync_playwright() as playwright:
            browser = launch(playwright)
            admin = browser.new_context(viewport=VIEWPORT, base_url=live.url)
            page = admin.new_page()
            page.goto("/signin")
            shot(page, "signin")
            sign_in(page, demo.admin_username, demo.admin_password)
            shot(page, "home")
            page.goto("/settings/system/api")
            shot(page, "system-settings-api", full=True)
            page.get_by_role("button", name="Show primary client secret").click()
            page.get_by_role("dialog").get_by_label("Password").fill(demo.admin_password)
            page.get_by_role("button", name="Show secret").click()
            shot(page, "system-settings-api-secret-shown", full=True)
            page.get_by_role(
                "button", name="Regenerate key for the secondary client secret"
            ).click()
            shot(page, "regenerate-secret-confirmation")
            page.keyboard.press("Escape")

            operator = browser.new_context(viewport=VIEWPORT, base_url=live.url)
            page = operator.new_page()
            page.goto("/signin")
            sign_in(page, demo.operator_username, demo.operator_password)
            page.goto("/settings/user/api")
            shot(page, "user-settings-api-empty")
            page.get_by_role("button", name="Generate Access Token").click()
            dialog = page.get_by_role("dialog")
            dialog.get_by_label("Username").fill(demo.operator_username)
            dialog.get_by_label("Password").fill(demo.operator_password)
            shot(page, "reauth-dialog")
            dialog.get_by_role("button", name="Sign In").click()
            shot(page, "user-settings-api-token", full=True)
            page.goto("/settings/user/api")
            shot(page, "user-settings-api-later")
            integration_signs_in(live, demo)
            page.get_by_role("link", name="Sessions").click()
            shot(page, "user-settings-sessions")
            page.get_by_role("button", name="Revoke").first.click()
            shot(page, "revoke-token-confirmation")
            page.keyboard.press("Escape")
            page.get_by_role("link", name="General").click()
            shot(page, "user-settings-general", full=True)

            clerk = browser.new_context(viewport=VIEWPORT, base_url=live.url)
            page = clerk.new_page()
            page.goto("/signin")
            sign_in(page, "casey.clerk@demo.example", clerk_password)
            page.goto("/settings/user/api")
            shot(page, "user-settings-api-no-permission")

            # Someone guessing the administrator's password, for the audit trail.
            stranger = browser.new_context(viewport=VIEWPORT, base_url=live.url)
            page = stranger.new_page()
            for _ in range(2):
                page.goto("/signin")
                page.get_by_label("E-mail").fill(demo.admin_username)
                page.get_by_label("Password").fill("summer-2024-guess")
                page.get_by_role("button", name="Sign in").click()

            page = admin.new_page()
            page.goto("/users")
            shot(page, "users", full=True)
            page.get_by_role("button", name="Create operator").click()
            dialog = page.get_by_role("dialog")
            dialog.get_by_label("E-mail").fill("robin.reyes@demo.example")
            dialog.get_by_label("Name (optional)").fill("Robin Reyes")
            dialog.get_by_label("API permission").check()
            shot(page, "users-create-dialog")
            page.keyboard.press("Escape")
            page.locator("tr", has_text=demo.operator_username).get_by_role(
                "link", name="Tokens"
            ).click()
            shot(page, "users-operator-tokens")
            page.goto("/audit")
            shot(page, "audit")
            browser.close()


def integration_signs_in(live: LiveServer, demo: DemoCredentials) -> None:
    """An integration gets a token at the token endpoint, and refreshes it once."""
    headers = {"User-Agent": "acme-sync/2.3"}
    with httpx.Client(base_url=live.url, headers=headers, timeout=30) as http:
        auth = (demo.client_id, demo.client_secret)
        issued = http.post(
            TOKEN_PATH,
            auth=auth,
            data={
                "grant_type": "password",
                "username": demo.operator_username,
                "password": demo.operator_password,
            },
        ).json()
        http.post(
            TOKEN_PATH,
            auth=auth,
            data={"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]},
        ).raise_for_status()


def sign_in(page: Page, email: str, password: str) -> None:
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/home")


def shot(page: Page, name: str, *, full: bool = False) -> None:
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(OUT / f"{name}.png"), full_page=full)
    print(f"docs/screenshots/{name}.png")


if __name__ == "__main__":
    main()
