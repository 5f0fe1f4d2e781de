"""User Settings → API: operators make, see, regenerate and delete their own access token."""

import re
import threading

import jwt
import pytest
from sqlalchemy import select

from erpauth.domain.audit import Origin
from erpauth.domain.companies import set_token_policy
from erpauth.domain.errors import DomainError
from erpauth.domain.operators import set_active
from erpauth.domain.web_tokens import replace_web_token
from erpauth.storage.models import AccessToken, Company, Operator
from erpauth.web.render import when
from tests.support import LiveServer
from tests.web_support import Browser, audit_kinds, live_web_tokens, new_token_on

API_TAB = "/settings/user/api"
MAKE = API_TAB + "/token"
DELETE = API_TAB + "/token/delete"


def expires_on(page: str) -> str:
    match = re.search(r'id="token-expires"[^>]*value="([^"]*)"', page)
    assert match, "no Token Expires On field"
    return match.group(1)


def test_operator_without_a_token_is_offered_generate_access_token(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        page = browser.sign_in_as(tenant.operator).get(API_TAB).text

    assert "Access Token Information" in page
    assert "Access token is not configured for your account" in page
    assert "Generate Access Token" in page
    assert tenant.client_id in page
    assert tenant.operator.email in page
    assert "Regenerate access token" not in page
    assert "Delete Token" not in page


def test_generate_makes_a_token_that_works_on_the_api(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        token = browser.sign_in_as(tenant.operator).generate_token(tenant.operator)

    me = live.me(token)
    assert me.status_code == 200, me.text
    assert me.json()["operator"]["email"] == tenant.operator.email
    assert me.json()["client_id"] == tenant.client_id
    [record] = live_web_tokens(live, tenant.operator.id)
    assert record.source == "web"


def test_web_token_carries_the_same_claims_as_a_token_endpoint_token(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        web_token = browser.sign_in_as(tenant.operator).generate_token(tenant.operator)
    endpoint_token = live.access_token(tenant)

    web_claims = jwt.decode(web_token, options={"verify_signature": False})
    endpoint_claims = jwt.decode(endpoint_token, options={"verify_signature": False})
    assert set(web_claims) == set(endpoint_claims)
    for claim in ["iss", "aud", "sub", "client_id", "company_id", "scope"]:
        assert web_claims[claim] == endpoint_claims[claim]
    web_header = jwt.get_unverified_header(web_token)
    endpoint_header = jwt.get_unverified_header(endpoint_token)
    assert (web_header["alg"], web_header["typ"]) == (
        endpoint_header["alg"],
        endpoint_header["typ"],
    )


def test_full_token_is_shown_once_then_only_its_last_characters(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        made = browser.post(
            MAKE, {"email": tenant.operator.email, "password": tenant.operator.password}
        )
        later = browser.get(API_TAB).text

    token = new_token_on(made.text)
    assert token is not None
    assert "Copy your access token now" in made.text
    assert made.headers["cache-control"] == "no-store"
    assert token not in later
    assert new_token_on(later) is None
    assert f"…{token[-6:]}" in later
    assert "Issued On" in later and "Last Used" in later and "Not used yet" in later
    assert "Regenerate access token" in later and "Delete Token" in later


def test_generate_needs_the_operators_own_email_and_password(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        wrong_password = browser.post(
            MAKE, {"email": tenant.operator.email, "password": "not-the-password-1"}
        )
        someone_else = browser.post(
            MAKE, {"email": tenant.admin.email, "password": tenant.admin.password}
        )

    for response in (wrong_password, someone_else):
        assert response.status_code == 400
        assert "The e-mail or password is wrong." in response.text
        assert new_token_on(response.text) is None
        assert "data-open-on-load" in response.text  # the sign-in window opens again
    assert live_web_tokens(live, tenant.operator.id) == []
    assert live_web_tokens(live, tenant.admin.id) == []
    assert ("web.reauth", "refused") in audit_kinds(live, tenant.company_id)


def test_generate_accepts_the_email_in_any_letter_case(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        response = browser.post(
            MAKE, {"email": tenant.operator.email.upper(), "password": tenant.operator.password}
        )

    assert response.status_code == 200
    assert new_token_on(response.text) is not None


def test_generate_without_csrf_token_is_refused(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        response = browser.post(
            MAKE,
            {"email": tenant.operator.email, "password": tenant.operator.password},
            csrf=False,
        )
        forged = browser.http.post(
            MAKE,
            data={
                "email": tenant.operator.email,
                "password": tenant.operator.password,
                "csrf_token": "A" * 43,
            },
        )

    assert response.status_code == forged.status_code == 403
    assert "Request refused" in response.text
    assert live_web_tokens(live, tenant.operator.id) == []


def test_csrf_token_of_another_session_is_refused(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as mine, Browser(live) as theirs:
        mine.sign_in_as(tenant.operator)
        theirs.sign_in_as(tenant.operator)
        response = mine.http.post(
            MAKE,
            data={
                "email": tenant.operator.email,
                "password": tenant.operator.password,
                "csrf_token": theirs.csrf(),
            },
        )

    assert response.status_code == 403


def test_regenerate_stops_the_old_token_at_once(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        old = browser.generate_token(tenant.operator)
        assert live.me(old).status_code == 200
        new = browser.generate_token(tenant.operator)

    assert new != old
    refused = live.me(old)
    assert refused.status_code == 401
    assert "revoked" in refused.json()["error_description"]
    assert live.me(new).status_code == 200
    assert len(live_web_tokens(live, tenant.operator.id)) == 1


def test_delete_stops_the_token_and_offers_generate_again(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        token = browser.generate_token(tenant.operator)
        response = browser.post(DELETE)
        page = browser.get(response.headers["location"]).text

    assert response.status_code == 303
    assert live.me(token).status_code == 401
    assert "Your access token was deleted" in page
    assert "Generate Access Token" in page
    assert ("token.revoke", "success") in audit_kinds(live, tenant.company_id)


def test_regenerate_and_delete_leave_token_endpoint_tokens_alone(live: LiveServer) -> None:
    tenant = live.tenant()
    endpoint_token = live.access_token(tenant)
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        browser.generate_token(tenant.operator)
        browser.generate_token(tenant.operator)
        browser.post(DELETE)

    assert live.me(endpoint_token).status_code == 200


def test_token_expires_on_shows_a_date_or_never_expires(live: LiveServer) -> None:
    dated, never = live.tenant(token_expiry_hours=24), live.tenant(token_expiry_hours=0)
    with Browser(live) as one, Browser(live) as other:
        dated_page = one.sign_in_as(dated.operator).post(
            MAKE, {"email": dated.operator.email, "password": dated.operator.password}
        )
        never_page = other.sign_in_as(never.operator).post(
            MAKE, {"email": never.operator.email, "password": never.operator.password}
        )

    [record] = live_web_tokens(live, dated.operator.id)
    assert expires_on(dated_page.text) == when(record.expires_at)
    assert expires_on(never_page.text) == "Never Expires"
    token = new_token_on(never_page.text)
    assert "exp" not in jwt.decode(token, options={"verify_signature": False})


def test_page_shows_when_the_token_was_last_used(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        token = browser.generate_token(tenant.operator)
        live.me(token)
        page = browser.get(API_TAB).text

    assert "Not used yet" not in page
    [record] = live_web_tokens(live, tenant.operator.id)
    assert record.last_used_at is not None


def test_operator_without_api_permission_is_told_why_and_gets_no_button(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    clerk = live.add_operator(tenant, "clerk", api_permission=False)
    with Browser(live) as browser:
        browser.sign_in_as(clerk)
        page = browser.get(API_TAB).text
        forced = browser.post(MAKE, {"email": clerk.email, "password": clerk.password})

    assert "You do not have API permission" in page
    assert "System Administrator can enable it" in page
    assert "Generate Access Token" not in page
    assert 'id="reauth-dialog"' not in page
    assert forced.status_code == 403
    assert new_token_on(forced.text) is None
    assert live_web_tokens(live, clerk.id) == []


def test_company_whose_license_has_no_api_is_told_why_and_gets_no_button(
    live: LiveServer,
) -> None:
    tenant = live.tenant(api_enabled=False)
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        page = browser.get(API_TAB).text
        forced = browser.post(
            MAKE, {"email": tenant.operator.email, "password": tenant.operator.password}
        )

    assert "license does not include API access" in page
    assert "System Administrator" in page
    assert "Generate Access Token" not in page
    assert forced.status_code == 403
    assert live_web_tokens(live, tenant.operator.id) == []


def test_new_token_uses_the_expiry_in_force_when_it_is_made(live: LiveServer) -> None:
    tenant = live.tenant(token_expiry_hours=24)
    with live.services.database.session() as session:
        company = session.get(Company, tenant.company_id)
        set_token_policy(session, company, token_expiry_hours=2, call_limit_per_minute=200)

    with Browser(live) as browser:
        token = browser.sign_in_as(tenant.operator).generate_token(tenant.operator)

    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 2 * 3600


def test_generate_clicks_at_once_in_two_browsers_leave_one_live_token(live: LiveServer) -> None:
    tenant = live.tenant()
    operator = tenant.operator
    browsers = [Browser(live).sign_in_as(operator) for _ in range(2)]
    clicks = [
        (dict(browser.http.cookies), browser.csrf()) for browser in browsers for _ in range(3)
    ]
    statuses: list[int] = []
    start = threading.Barrier(len(clicks), timeout=30)

    def click(cookies: dict[str, str], csrf: str) -> None:
        form = {"email": operator.email, "password": operator.password, "csrf_token": csrf}
        with live.client(cookies=cookies) as http:
            start.wait()
            statuses.append(http.post(MAKE, data=form).status_code)

    threads = [threading.Thread(target=click, args=click_args) for click_args in clicks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for browser in browsers:
        browser.http.close()

    assert statuses == [200] * len(clicks)
    assert len(live_web_tokens(live, operator.id)) == 1
    with live.services.database.session() as session:
        made = session.scalars(select(AccessToken).where(AccessToken.operator_id == operator.id))
        assert len(made.all()) == len(clicks)


def test_second_transaction_making_a_web_token_waits_for_the_first(live: LiveServer) -> None:
    # Deterministic version of the race above: the second transaction must queue behind the
    # first, then revoke the token the first made.
    tenant = live.tenant()
    database, tokens = live.services.database, live.services.tokens

    def make_token() -> None:
        with database.session() as session:
            operator = session.get(Operator, tenant.operator.id)
            replace_web_token(session, tokens, operator, Origin())

    with database.session() as first:
        replace_web_token(first, tokens, first.get(Operator, tenant.operator.id), Origin())
        second = threading.Thread(target=make_token)
        second.start()
        second.join(timeout=1.5)
        second_waited = second.is_alive()
    second.join(timeout=30)

    assert second_waited
    assert not second.is_alive()
    assert len(live_web_tokens(live, tenant.operator.id)) == 1


def test_a_deactivation_committed_while_a_web_token_is_made_leaves_no_live_token(
    live: LiveServer,
) -> None:
    """The page loads the operator, checks the password, then makes the token; an
    administrator who deactivates the operator in between revokes every token they hold, and
    the one being made must not slip past (it would come back if they were activated again)."""
    tenant = live.tenant()
    database, tokens = live.services.database, live.services.tokens

    with database.session() as making:
        operator = making.get(Operator, tenant.operator.id)  # loaded while still active
        with database.session() as administrator:
            set_active(administrator, administrator.get(Operator, tenant.operator.id), False)
        with pytest.raises(DomainError):
            replace_web_token(making, tokens, operator, Origin())

    assert live_web_tokens(live, tenant.operator.id) == []
