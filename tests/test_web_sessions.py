"""Sessions: operators list and revoke their own tokens; administrators those of their company."""

from sqlalchemy import select

from erpauth.storage.models import AuditEvent
from tests.lifecycle import refresh, token_pair
from tests.support import TOKEN_PATH, LiveServer, Tenant
from tests.web_support import Browser, audit_kinds, jti_of

SESSIONS = "/settings/user/sessions"


def tokens_page(operator_id: object) -> str:
    return f"/users/{operator_id}/tokens"


def integration_token(live: LiveServer, tenant: Tenant) -> dict:
    """A token pair from the token endpoint, as an integration called acme-sync gets it."""
    with live.client(headers={"User-Agent": "acme-sync/2.3"}) as http:
        response = http.post(
            TOKEN_PATH,
            auth=(tenant.client_id, tenant.primary_secret),
            data={
                "grant_type": "password",
                "username": tenant.operator.email,
                "password": tenant.operator.password,
            },
        )
    assert response.status_code == 200, response.text
    return response.json()


def test_sessions_tab_lists_where_and_when_each_token_was_made_but_never_the_token(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    pair = integration_token(live, tenant)
    refreshed = refresh(live, tenant, pair["refresh_token"]).json()
    with Browser(live) as browser:
        web_token = browser.sign_in_as(tenant.operator).generate_token(tenant.operator)
        page = browser.get(SESSIONS)

    assert page.status_code == 200
    for token in (pair["access_token"], refreshed["access_token"], web_token):
        assert f"…{token[-6:]}" in page.text
        assert token not in page.text
    for made_by in ("Token endpoint", "Token refresh", "User Settings → API"):
        assert made_by in page.text
    assert "acme-sync/2.3" in page.text
    assert "127.0.0.1" in page.text
    assert "Renewable until" in page.text
    assert pair["refresh_token"] not in page.text


def test_sessions_tab_shows_only_the_operators_own_tokens(live: LiveServer) -> None:
    tenant = live.tenant()
    admin_token = live.access_token(tenant, tenant.admin)
    with Browser(live) as browser:
        page = browser.sign_in_as(tenant.operator).get(SESSIONS).text

    assert f"…{admin_token[-6:]}" not in page
    assert 'id="no-tokens"' in page


def test_token_tables_are_named_for_screen_readers_by_whose_tokens_they_list(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    live.access_token(tenant)
    with Browser(live) as browser:
        own = browser.sign_in_as(tenant.operator).get(SESSIONS).text
    with Browser(live) as browser:
        listed = browser.sign_in_as(tenant.admin).get(tokens_page(tenant.operator.id)).text

    assert '<caption class="visually-hidden">Your access tokens</caption>' in own
    assert '<caption class="visually-hidden">Access tokens of Operator</caption>' in listed


def test_revoking_a_token_on_the_sessions_tab_stops_it_at_once_and_keeps_the_others(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    doomed, kept = live.access_token(tenant), live.access_token(tenant)
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        response = browser.post(f"{SESSIONS}/{jti_of(doomed)}/revoke")
        page = browser.get(response.headers["location"]).text

    assert response.status_code == 303
    assert response.headers["location"] == SESSIONS
    assert "The token was revoked." in page
    assert f"…{doomed[-6:]}" not in page
    assert live.me(doomed).status_code == 401
    assert live.me(kept).status_code == 200
    assert ("token.revoke", "success") in audit_kinds(live, tenant.company_id)


def test_revoking_a_token_that_came_with_a_refresh_token_ends_the_refresh_token_too(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    pair = token_pair(live, tenant)
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        browser.post(f"{SESSIONS}/{jti_of(pair['access_token'])}/revoke")

    answer = refresh(live, tenant, pair["refresh_token"])
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"


def test_revoking_a_token_twice_says_nothing_was_changed(live: LiveServer) -> None:
    tenant = live.tenant()
    token = live.access_token(tenant)
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        browser.post(f"{SESSIONS}/{jti_of(token)}/revoke")
        again = browser.post(f"{SESSIONS}/{jti_of(token)}/revoke")
        page = browser.get(again.headers["location"]).text

    assert again.headers["location"] == SESSIONS
    assert "That token was revoked already; nothing was changed." in page
    assert audit_kinds(live, tenant.company_id).count(("token.revoke", "success")) == 1


def test_sessions_tab_revoke_needs_the_csrf_token(live: LiveServer) -> None:
    tenant = live.tenant()
    token = live.access_token(tenant)
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        response = browser.post(f"{SESSIONS}/{jti_of(token)}/revoke", csrf=False)

    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert live.me(token).status_code == 200


def test_an_operator_cannot_revoke_someone_elses_token_from_their_sessions_tab(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    admins_token = live.access_token(tenant, tenant.admin)
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        response = browser.post(f"{SESSIONS}/{jti_of(admins_token)}/revoke")

    assert response.status_code == 404
    assert live.me(admins_token).status_code == 200


def test_admin_lists_and_revokes_an_operators_token_from_users(live: LiveServer) -> None:
    tenant = live.tenant()
    doomed, kept = live.access_token(tenant), live.access_token(tenant)
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        users = browser.get("/users").text
        listing = browser.get(tokens_page(tenant.operator.id))
        response = browser.post(f"{tokens_page(tenant.operator.id)}/{jti_of(doomed)}/revoke")

    assert f'href="{tokens_page(tenant.operator.id)}"' in users
    assert "2 tokens" in users
    assert listing.status_code == 200
    assert f"…{doomed[-6:]}" in listing.text and f"…{kept[-6:]}" in listing.text
    assert doomed not in listing.text
    assert response.status_code == 303
    assert response.headers["location"].startswith(tokens_page(tenant.operator.id))
    assert live.me(doomed).status_code == 401
    assert live.me(kept).status_code == 200


def test_users_links_to_an_operators_tokens_only_when_there_are_some(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        users = browser.sign_in_as(tenant.admin).get("/users").text

    # The operator has no token yet: the count says so, and no link leads to an empty list.
    assert f'href="{tokens_page(tenant.operator.id)}"' not in users
    assert '<span class="muted">None</span>' in users


def test_admin_revoking_a_token_is_audited_with_the_admin_as_actor(live: LiveServer) -> None:
    tenant = live.tenant()
    token = live.access_token(tenant)
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        browser.post(f"{tokens_page(tenant.operator.id)}/{jti_of(token)}/revoke")

    with live.services.database.session() as session:
        event = session.scalars(
            select(AuditEvent).where(
                AuditEvent.company_id == tenant.company_id, AuditEvent.kind == "token.revoke"
            )
        ).one()
    assert (event.actor_id, event.operator_id) == (tenant.admin.id, tenant.operator.id)
    assert event.detail["jti"] == jti_of(token)
    assert token not in str(event.detail)


def test_admin_cannot_list_or_revoke_tokens_of_another_companys_operator(
    live: LiveServer,
) -> None:
    ours, theirs = live.tenant(), live.tenant()
    their_token = live.access_token(theirs)
    with Browser(live) as browser:
        browser.sign_in_as(ours.admin)
        listing = browser.get(tokens_page(theirs.operator.id))
        revoke = browser.post(f"{tokens_page(theirs.operator.id)}/{jti_of(their_token)}/revoke")
        # Their token through our own operator's page is no token either.
        sideways = browser.post(f"{tokens_page(ours.operator.id)}/{jti_of(their_token)}/revoke")

    for response in (listing, revoke, sideways):
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
    assert f"…{their_token[-6:]}" not in listing.text
    assert theirs.operator.email not in listing.text
    assert live.me(their_token).status_code == 200


def test_operators_cannot_open_or_use_an_operators_tokens_page(live: LiveServer) -> None:
    tenant = live.tenant()
    admins_token = live.access_token(tenant, tenant.admin)
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        listing = browser.get(tokens_page(tenant.admin.id))
        revoke = browser.post(f"{tokens_page(tenant.admin.id)}/{jti_of(admins_token)}/revoke")

    assert listing.status_code == revoke.status_code == 403
    assert live.me(admins_token).status_code == 200


def test_admin_token_revoke_needs_the_csrf_token(live: LiveServer) -> None:
    tenant = live.tenant()
    token = live.access_token(tenant)
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        response = browser.post(
            f"{tokens_page(tenant.operator.id)}/{jti_of(token)}/revoke", csrf=False
        )

    assert response.status_code == 403
    assert live.me(token).status_code == 200


def test_a_revoked_web_token_leaves_the_api_tab_without_a_token(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        token = browser.sign_in_as(tenant.operator).generate_token(tenant.operator)
        browser.post(f"{SESSIONS}/{jti_of(token)}/revoke")
        api_tab = browser.get("/settings/user/api").text

    assert 'id="no-token"' in api_tab
    assert live.me(token).status_code == 401
