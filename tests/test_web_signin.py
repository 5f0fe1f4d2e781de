"""Signing in and out of the web application, its session cookie, and session lifetime."""

import re
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select, update

from erpauth.config import Settings
from erpauth.domain.operators import force_password_change, get_operator, set_active
from erpauth.security.secrets import sha256_hex
from erpauth.storage.models import WebSession
from erpauth.web import signin as signin_module
from tests.fast_paths import backends_waiting
from tests.support import LiveServer, live_server
from tests.web_support import SESSION_COOKIE, Browser, audit_kinds


def set_cookie_header(response, name: str) -> str:
    headers = [v for k, v in response.headers.multi_items() if k == "set-cookie"]
    matching = [h for h in headers if h.startswith(f"{name}=")]
    assert matching, headers
    return matching[0]


def test_root_sends_a_signed_out_browser_to_sign_in(live: LiveServer) -> None:
    with Browser(live) as browser:
        response = browser.get("/")

    assert response.status_code == 303
    assert response.headers["location"] == "/signin"


def test_root_sends_a_signed_in_browser_home(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        response = browser.get("/")

    assert response.status_code == 303
    assert response.headers["location"] == "/home"


def test_session_cookie_is_httponly_and_samesite_lax_and_not_secure_over_http(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        response = browser.sign_in(tenant.operator.email, tenant.operator.password)

    cookie = set_cookie_header(response, SESSION_COOKIE).lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "path=/" in cookie
    assert "secure" not in cookie


def served_over_https(live: LiveServer) -> Settings:
    """The live server's settings, as if it were served at an https:// address."""
    return Settings(
        data_dir=live.settings.data_dir,
        database_url=live.settings.database_url,
        secret_key=None,
        public_url="https://erpauth.example",
    )


def test_session_cookie_is_secure_with_host_prefix_when_served_over_https(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    settings = served_over_https(live)
    with live_server(settings) as https_live, Browser(https_live) as browser:
        page = browser.get("/signin")
        # The client speaks plain HTTP, so it keeps Secure cookies to itself: send it by hand.
        nonce = set_cookie_header(page, "__Host-erpauth_signin").split(";")[0]
        assert "; secure" in set_cookie_header(page, "__Host-erpauth_signin").lower()
        response = browser.http.post(
            "/signin",
            headers={"Cookie": nonce},
            data={
                "email": tenant.operator.email,
                "password": tenant.operator.password,
                "form_token": re.search(r'name="form_token" value="([^"]+)"', page.text).group(1),
            },
        )

    assert response.status_code == 303
    cookie = set_cookie_header(response, "__Host-erpauth_session").lower()
    assert "; secure" in cookie
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "domain=" not in cookie


def test_sign_in_stores_only_the_digest_of_the_session_id(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        session_id = browser.session_id

    with live.services.database.session() as session:
        hashes = session.scalars(
            select(WebSession.id_hash).where(WebSession.operator_id == tenant.operator.id)
        ).all()
    assert session_id not in hashes
    assert sha256_hex(session_id) in hashes


def test_wrong_password_and_unknown_email_get_the_same_message(live: LiveServer) -> None:
    tenant = live.tenant()
    unknown = f"nobody.{tenant.code.lower()}@nowhere.example"
    with Browser(live) as browser:
        wrong_password = browser.sign_in(tenant.operator.email, "not-the-password-1")
        unknown_email = browser.sign_in(unknown, "not-the-password-1")

    for response in (wrong_password, unknown_email):
        assert response.status_code == 400
        assert "The e-mail or password is wrong." in response.text
        assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
    strip = re.compile(r'value="[^"]*"')
    assert strip.sub("", wrong_password.text).replace(tenant.operator.email, "") == strip.sub(
        "", unknown_email.text
    ).replace(unknown, "")


def test_unknown_email_takes_about_as_long_as_a_wrong_password(live: LiveServer) -> None:
    tenant = live.tenant()
    unknown = f"nobody.{tenant.code.lower()}@nowhere.example"

    def timed(email: str, attempt: int) -> float:
        # Each try from its own address, so the brute-force delay never answers in its place.
        with Browser(live, source=f"127.0.1.{attempt}") as browser:
            browser.get("/signin")
            started = time.perf_counter()
            browser.sign_in(email, "not-the-password-1")
            return time.perf_counter() - started

    wrong_password = statistics.median(timed(tenant.operator.email, n) for n in range(1, 6))
    unknown_email = statistics.median(timed(unknown, n) for n in range(1, 6))

    # Without the dummy hash check an unknown e-mail answers several times faster.
    assert unknown_email > 0.5 * wrong_password


def test_sign_in_form_without_its_form_token_is_refused(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.get("/signin")
        response = browser.http.post(
            "/signin",
            data={"email": tenant.operator.email, "password": tenant.operator.password},
        )

    assert response.status_code == 403
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")


def test_sign_in_form_token_from_another_browser_is_refused(live: LiveServer) -> None:
    # Login CSRF: a page elsewhere cannot sign the victim in with the attacker's account.
    tenant = live.tenant()
    with Browser(live) as attacker, Browser(live) as victim:
        token = re.search(r'name="form_token" value="([^"]+)"', attacker.get("/signin").text)
        victim.get("/signin")
        response = victim.http.post(
            "/signin",
            data={
                "email": tenant.operator.email,
                "password": tenant.operator.password,
                "form_token": token.group(1),
            },
        )

    assert response.status_code == 403


def test_sign_in_form_nonce_planted_by_a_sibling_subdomain_is_refused_over_https(
    live: LiveServer,
) -> None:
    """Login CSRF from a sibling subdomain: it can set a cookie without the __Host- prefix for
    the whole domain, with a nonce whose form token it got from its own visit."""
    tenant = live.tenant()
    settings = served_over_https(live)
    with live_server(settings) as https_live, Browser(https_live) as attacker:
        page = attacker.get("/signin")
        cookie = set_cookie_header(page, "__Host-erpauth_signin")
        assert "; path=/;" in cookie.lower() + ";"
        assert "domain=" not in cookie.lower()
        nonce = cookie.split(";")[0].split("=", 1)[1]
        form = {
            "email": tenant.operator.email,
            "password": tenant.operator.password,
            "form_token": re.search(r'name="form_token" value="([^"]+)"', page.text).group(1),
        }
        planted = attacker.http.post(
            "/signin", headers={"Cookie": f"erpauth_signin={nonce}"}, data=form
        )

    assert planted.status_code == 403
    assert "erpauth_session" not in planted.headers.get("set-cookie", "")


def test_sign_in_never_adopts_a_session_id_planted_in_the_browser(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.http.cookies.set(SESSION_COOKIE, "planted-by-an-attacker", domain="127.0.0.1")
        browser.sign_in_as(tenant.operator)
        session_id = browser.session_id

    assert session_id not in (None, "planted-by-an-attacker")
    with live.services.database.session() as session:
        assert session.get(WebSession, sha256_hex("planted-by-an-attacker")) is None


def test_signing_in_again_replaces_the_previous_session(live: LiveServer) -> None:
    tenant = live.tenant()
    operator = tenant.operator
    with Browser(live) as browser:
        page = browser.get("/signin").text
        form = {
            "email": operator.email,
            "password": operator.password,
            "form_token": re.search(r'name="form_token" value="([^"]+)"', page).group(1),
        }
        nonce = browser.http.cookies.get("erpauth_signin")
        browser.http.post("/signin", data=form)
        first = browser.session_id
        browser.http.cookies.set("erpauth_signin", nonce, domain="127.0.0.1", path="/signin")
        browser.http.post("/signin", data=form)
        second = browser.session_id

    assert first and second and second != first
    with Browser(live) as other:
        other.http.cookies.set(SESSION_COOKIE, first, domain="127.0.0.1")
        assert other.get("/home").status_code == 303


def password_dialog(tenant, which: str) -> tuple[object, str, dict[str, str]]:
    """Who opens which password dialog, where it posts, and the right answer to it."""
    if which == "access-token":
        operator = tenant.operator
        form = {"email": operator.email, "password": operator.password}
        return operator, "/settings/user/api/token", form
    admin = tenant.admin
    return admin, "/settings/system/api/secrets/primary/show", {"password": admin.password}


@pytest.mark.parametrize("which", ["access-token", "show-secret"])
def test_a_password_dialog_moves_the_session_to_a_new_id_and_csrf_token(
    live: LiveServer, which: str
) -> None:
    tenant = live.tenant()
    operator, action, form = password_dialog(tenant, which)
    with Browser(live) as browser:
        browser.sign_in_as(operator)
        before, old_csrf = browser.session_id, browser.csrf()
        response = browser.post(action, form)
        after = browser.session_id
        shown_csrf = re.search(r'name="csrf_token" value="([^"]+)"', response.text).group(1)
        stale_form = browser.post("/signout", {"csrf_token": old_csrf}, csrf=False)
        sign_out = browser.post("/signout", {"csrf_token": shown_csrf}, csrf=False)

    assert response.status_code == 200, response.text
    assert "erpauth_session=" in response.headers["set-cookie"]
    assert before and after and after != before
    assert shown_csrf != old_csrf
    assert stale_form.status_code == 403
    assert sign_out.status_code == 303
    with Browser(live) as other:
        other.http.cookies.set(SESSION_COOKIE, before, domain="127.0.0.1")
        assert other.get("/home").status_code == 303
    with live.services.database.session() as session:
        assert session.get(WebSession, sha256_hex(before)) is None


@pytest.mark.parametrize("which", ["access-token", "show-secret"])
def test_a_wrong_password_in_a_dialog_keeps_the_session_id(live: LiveServer, which: str) -> None:
    tenant = live.tenant()
    operator, action, form = password_dialog(tenant, which)
    with Browser(live) as browser:
        browser.sign_in_as(operator)
        before = browser.session_id
        response = browser.post(action, form | {"password": "not-the-password-1"})
        after = browser.session_id
        home = browser.get("/home")

    assert response.status_code == 400
    assert after == before
    assert home.status_code == 200


def test_sign_out_ends_the_session_on_the_server(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        session_id = browser.session_id
        response = browser.post("/signout")

    assert response.status_code == 303
    assert response.headers["location"] == "/signin"
    with Browser(live) as replay:
        replay.http.cookies.set(SESSION_COOKIE, session_id, domain="127.0.0.1")
        assert replay.get("/home").headers["location"].startswith("/signin")
    assert ("web.signout", "success") in audit_kinds(live, tenant.company_id)


def test_a_notice_after_a_redirect_is_shown_once_and_never_put_in_the_address(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        response = browser.post("/signout")
        first = browser.get(response.headers["location"])
        again = browser.get("/signin")

    assert response.headers["location"] == "/signin"
    assert "erpauth_notice=" in response.headers["set-cookie"]
    assert "You are signed out." in first.text
    assert "You are signed out." not in again.text


def test_a_notice_waits_for_its_own_page_and_cannot_be_forged_or_linked(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        saved = browser.post(
            "/settings/system/api/policy",
            {"token_expiry_hours": "1", "call_limit_per_minute": "60"},
        )
        elsewhere = browser.get("/users")
        own_page = browser.get("/settings/system/api")
        browser.http.cookies.set("erpauth_notice", "policy-saved.forged", domain="127.0.0.1")
        forged = browser.get("/settings/system/api")

    assert saved.headers["location"] == "/settings/system/api"
    assert "Token expiry and call limit saved." not in elsewhere.text
    assert "Token expiry and call limit saved." in own_page.text
    assert "Token expiry and call limit saved." not in forged.text
    with Browser(live) as stranger:
        linked = stranger.get("/signin?notice=signed-out")
    assert linked.status_code == 200
    assert "You are signed out." not in linked.text


def test_a_copied_notice_cookie_shows_nothing_once_its_minute_is_over(live: LiveServer) -> None:
    def signed(until: int) -> str:
        mac = live.services.box.derive(f"notice:/signin:signed-out:{until}")
        return f"signed-out.{until}.{mac}"

    with Browser(live) as browser:
        browser.http.cookies.set("erpauth_notice", signed(int(time.time()) + 60), "127.0.0.1")
        fresh = browser.get("/signin")
        browser.http.cookies.set("erpauth_notice", signed(int(time.time()) - 1), "127.0.0.1")
        kept_too_long = browser.get("/signin")

    assert "You are signed out." in fresh.text
    assert "You are signed out." not in kept_too_long.text


def test_sign_out_without_csrf_token_is_refused_with_a_page(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        response = browser.post("/signout", csrf=False)
        still_signed_in = browser.get("/home").status_code

    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert "Request refused" in response.text
    assert still_signed_in == 200


@pytest.mark.parametrize("column", ["last_seen_at", "expires_at"])
def test_session_past_its_idle_or_absolute_limit_is_ended(live: LiveServer, column: str) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        session_id = browser.session_id
        long_ago = datetime.now(UTC) - timedelta(days=2)
        with live.services.database.session() as session:
            session.execute(
                update(WebSession)
                .where(WebSession.id_hash == sha256_hex(session_id))
                .values({column: long_ago})
            )
        response = browser.get("/home")
        signin_page = browser.get(response.headers["location"])

    assert response.status_code == 303
    assert response.headers["location"] == "/signin"
    assert "Your session has ended." in signin_page.text
    assert "max-age=0" in set_cookie_header(response, SESSION_COOKIE).lower()
    with live.services.database.session() as session:
        assert session.get(WebSession, sha256_hex(session_id)) is None


@pytest.mark.parametrize("path", ["/home", "/settings/user/api"])
def test_a_page_open_while_the_session_ends_elsewhere_is_no_error(
    live: LiveServer, path: str
) -> None:
    """The page reads the session, then notes when it was last seen; meanwhile another tab
    signs out (or a password change, a deactivation ends it). That is no server error."""
    if not live.settings.resolved_database_url().startswith("postgresql"):
        pytest.skip("holds the session's row deleted but uncommitted, as only PostgreSQL lets")
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        id_hash = sha256_hex(browser.session_id)
        with live.services.database.session() as session:
            a_while_ago = datetime.now(UTC) - timedelta(minutes=5)  # due to be noted again
            session.execute(
                update(WebSession)
                .where(WebSession.id_hash == id_hash)
                .values(last_seen_at=a_while_ago)
            )
        with ThreadPoolExecutor(1) as pool, live.services.database.engine.connect() as other:
            other.execute(delete(WebSession).where(WebSession.id_hash == id_hash))
            page = pool.submit(browser.get, path)
            backends_waiting(other, "web_sessions", count=1)
            other.commit()
            response = page.result(timeout=30)

    assert response.status_code in (200, 303), response.text
    with live.services.database.session() as session:
        assert session.get(WebSession, id_hash) is None


def test_deactivating_an_operator_ends_their_session(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        with live.services.database.session() as session:
            set_active(session, get_operator(session, tenant.operator.email), False)
        response = browser.get("/settings/user/api")

    assert response.status_code == 303
    assert response.headers["location"].startswith("/signin")


def test_deactivated_operator_cannot_sign_in(live: LiveServer) -> None:
    tenant = live.tenant()
    with live.services.database.session() as session:
        set_active(session, get_operator(session, tenant.operator.email), False)

    with Browser(live) as browser:
        response = browser.sign_in(tenant.operator.email, tenant.operator.password)

    assert response.status_code == 400
    assert "deactivated" in response.text
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")


def test_a_page_asked_for_while_signed_out_opens_after_sign_in(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        first = browser.get("/settings/user/api")
        assert first.headers["location"] == "/signin?next=%2Fsettings%2Fuser%2Fapi"
        page = browser.get(first.headers["location"]).text
        form_token = re.search(r'name="form_token" value="([^"]+)"', page).group(1)
        assert 'name="next" value="/settings/user/api"' in page
        response = browser.http.post(
            "/signin",
            data={
                "email": tenant.operator.email,
                "password": tenant.operator.password,
                "form_token": form_token,
                "next": "/settings/user/api",
            },
        )

    assert response.headers["location"] == "/settings/user/api"


@pytest.mark.parametrize(
    "next_path", ["https://evil.example/", "//evil.example/", "/\\evil.example", "/docs"]
)
def test_sign_in_never_sends_the_browser_off_the_web_pages(
    live: LiveServer, next_path: str
) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        page = browser.get("/signin").text
        form_token = re.search(r'name="form_token" value="([^"]+)"', page).group(1)
        response = browser.http.post(
            "/signin",
            data={
                "email": tenant.operator.email,
                "password": tenant.operator.password,
                "form_token": form_token,
                "next": next_path,
            },
        )

    assert response.headers["location"] == "/home"


def test_pages_are_never_cached_and_carry_a_strict_content_security_policy(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    with Browser(live) as signed_out, Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        pages = ["/home", "/settings/user/api", "/settings/system/api", "/users"]
        for path, response in [("/signin", signed_out.get("/signin"))] + [
            (path, browser.get(path)) for path in pages
        ]:
            assert response.status_code == 200, path
            assert response.headers["cache-control"] == "no-store", path
            csp = response.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "style-src 'self'" in csp
            # The policy forbids inline code, so none may be on the page.
            assert not re.search(r"<script(?![^>]*\bsrc=)", response.text), path
            assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=", response.text), path
            assert not re.search(r"(src|href)=\"(https?:)?//", response.text), path


def test_static_assets_are_served_locally(live: LiveServer) -> None:
    with Browser(live) as browser:
        for path, kind in [("/static/app.css", "text/css"), ("/static/app.js", "javascript")]:
            response = browser.get(path)
            assert response.status_code == 200
            assert kind in response.headers["content-type"]


def test_navigation_shows_admin_pages_only_to_system_administrators(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as admin, Browser(live) as operator:
        admin_home = admin.sign_in_as(tenant.admin).get("/home").text
        operator_home = operator.sign_in_as(tenant.operator).get("/home").text

    for link in ['href="/home"', 'href="/settings/user/api"']:
        assert link in admin_home and link in operator_home
    for link in ['href="/settings/system/api"', 'href="/users"']:
        assert link in admin_home
        assert link not in operator_home


@pytest.mark.parametrize(
    "path", ["/settings/system", "/settings/system/general", "/settings/system/api", "/users"]
)
def test_admin_pages_refuse_operators_with_a_403_page(live: LiveServer, path: str) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        response = browser.sign_in_as(tenant.operator).get(path)

    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert "Only System Administrators" in response.text


def test_sign_in_and_refusals_are_audited(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in(tenant.operator.email, "not-the-password-1")
        browser.sign_in_as(tenant.operator)

    kinds = audit_kinds(live, tenant.company_id)
    assert ("web.signin", "refused") in kinds
    assert ("web.signin", "success") in kinds


def test_a_sign_in_overtaken_by_a_forced_password_change_leaves_no_session(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An administrator forces a new password just as the old one signs in, after the sign-in
    has seen the old one is still current: the change ends every session, this one too."""
    tenant = live.tenant()
    open_session = signin_module.start_session
    forced: list[str] = []

    def force_change() -> None:
        with live.services.database.session() as session:
            operator = get_operator(session, tenant.operator.email)
            forced.append(force_password_change(session, live.services.hasher, operator))

    change = threading.Thread(target=force_change)

    def administrator_acts_meanwhile(*args: object, **kwargs: object) -> str:
        change.start()
        change.join(timeout=2)  # as long as it takes, unless it must wait for this sign-in
        return open_session(*args, **kwargs)

    monkeypatch.setattr(signin_module, "start_session", administrator_acts_meanwhile)
    with Browser(live) as browser:
        browser.sign_in(tenant.operator.email, tenant.operator.password)
        change.join(timeout=30)
        monkeypatch.undo()
        home = browser.get("/home")

    assert forced, "the password was forced during the sign-in"
    assert home.status_code == 303
    with live.services.database.session() as session:
        sessions = session.scalar(
            select(func.count())
            .select_from(WebSession)
            .where(WebSession.operator_id == tenant.operator.id)
        )
    assert sessions == 0
