"""System Settings → API: the company's client ID and secrets, token expiry and call limit."""

import re
from typing import Any

import pytest
from sqlalchemy import func, select

from erpauth.domain.operators import force_password_change, get_operator
from erpauth.storage.models import AuditEvent, Company, WebSession
from tests.support import LiveServer
from tests.web_support import Browser, audit_kinds, secret_on

API_TAB = "/settings/system/api"
POLICY = API_TAB + "/policy"


def show(slot: str) -> str:
    return f"{API_TAB}/secrets/{slot}/show"


def regenerate(slot: str) -> str:
    return f"{API_TAB}/secrets/{slot}/regenerate"


def policy_of(live: LiveServer, company_id) -> tuple[int, int]:
    with live.services.database.session() as session:
        company = session.get(Company, company_id)
        return company.token_expiry_hours, company.call_limit_per_minute


GENERAL_TAB = "/settings/system/general"


def current_tab(page: str) -> str | None:
    found = re.search(r'<a href="([^"]+)" class="tab" aria-current="page">', page)
    return found.group(1) if found else None


def test_general_tab_has_an_address_of_its_own_and_is_the_tab_shown_current(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        general = browser.get(GENERAL_TAB)
        api = browser.get(API_TAB)
        opened = browser.get("/settings/system")

    assert general.status_code == 200
    assert tenant.code in general.text
    assert current_tab(general.text) == GENERAL_TAB
    assert current_tab(api.text) == API_TAB
    assert f'<a href="{GENERAL_TAB}" class="tab"' in api.text
    assert opened.status_code == 303
    assert opened.headers["location"] == GENERAL_TAB


def test_admin_sees_license_client_id_and_masked_secrets(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        page = browser.sign_in_as(tenant.admin).get(API_TAB).text

    assert re.search(r'id="api-enabled">Yes<', page)
    assert tenant.client_id in page
    assert "Last provisioned date" in page
    assert page.count("Last updated date") == 2
    assert tenant.primary_secret not in page
    assert tenant.secondary_secret not in page
    assert secret_on(page, "primary") is None


def test_api_enabled_shows_no_when_the_license_has_no_api(live: LiveServer) -> None:
    tenant = live.tenant(api_enabled=False)
    with Browser(live) as browser:
        page = browser.sign_in_as(tenant.admin).get(API_TAB).text

    assert re.search(r'id="api-enabled">No<', page)


@pytest.mark.parametrize("slot", ["primary", "secondary"])
def test_show_reveals_a_secret_after_the_admins_password(live: LiveServer, slot: str) -> None:
    tenant = live.tenant()
    expected = tenant.primary_secret if slot == "primary" else tenant.secondary_secret
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        response = browser.post(show(slot), {"password": tenant.admin.password})

    assert response.status_code == 200
    assert secret_on(response.text, slot) == expected
    other = "secondary" if slot == "primary" else "primary"
    assert secret_on(response.text, other) is None
    assert ("secret.show", "success") in audit_kinds(live, tenant.company_id)


def test_show_with_a_wrong_password_reveals_nothing(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        response = browser.post(show("primary"), {"password": "not-the-password-1"})

    assert response.status_code == 400
    assert "The password is wrong." in response.text
    assert tenant.primary_secret not in response.text
    assert ("secret.show", "refused") in audit_kinds(live, tenant.company_id)


def test_show_reveals_nothing_and_revives_no_session_when_the_password_changes_meanwhile(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = live.tenant()
    guard = live.services.abuse.sign_in
    check = guard.verify

    def another_administrator_forces_a_new_password(*args: Any, **kwargs: Any) -> bool:
        # Suspecting the account, another administrator gives it a new password while this
        # one is checked: every session of the account ends.
        password_ok = check(*args, **kwargs)
        with live.services.database.session() as session:
            operator = get_operator(session, tenant.admin.email)
            force_password_change(session, live.services.hasher, operator)
        return password_ok

    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        csrf = browser.csrf()
        monkeypatch.setattr(guard, "verify", another_administrator_forces_a_new_password)
        response = browser.http.post(
            show("primary"), data={"password": tenant.admin.password, "csrf_token": csrf}
        )
        monkeypatch.undo()
        afterwards = browser.get("/home")

    assert response.status_code == 409
    assert tenant.primary_secret not in response.text
    assert "changed elsewhere just now" in response.text
    assert afterwards.status_code == 303, "the forced change signed the browser out for good"
    with live.services.database.session() as session:
        sessions = session.scalar(
            select(func.count())
            .select_from(WebSession)
            .where(WebSession.operator_id == tenant.admin.id)
        )
    assert sessions == 0
    assert ("secret.show", "success") not in audit_kinds(live, tenant.company_id)


def test_show_without_csrf_token_is_refused(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        response = browser.post(show("primary"), {"password": tenant.admin.password}, csrf=False)

    assert response.status_code == 403
    assert tenant.primary_secret not in response.text


def test_show_dialogs_tell_a_password_manager_whose_password_they_ask_for(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        page = browser.sign_in_as(tenant.admin).get(API_TAB).text

    username = (
        f'<input type="email" autocomplete="username" value="{tenant.admin.email}" hidden readonly>'
    )
    for slot in ("primary", "secondary"):
        form = re.search(rf'<form method="post" action="{show(slot)}">(.*?)</form>', page, re.S)
        assert form is not None
        assert username in form.group(1)


def test_regenerating_the_primary_secret_stops_it_and_leaves_the_secondary(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    # Used once before, so the server has checked (and remembers) the old secret.
    assert live.password_grant(tenant, secret=tenant.primary_secret).status_code == 200
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        response = browser.post(regenerate("primary"))
        page = browser.get(response.headers["location"]).text
        shown = browser.post(show("primary"), {"password": tenant.admin.password}).text

    assert response.status_code == 303
    assert "primary client secret was regenerated" in page
    new_secret = secret_on(shown, "primary")
    assert new_secret not in (None, tenant.primary_secret)
    assert live.password_grant(tenant, secret=tenant.primary_secret).status_code == 401
    assert live.password_grant(tenant, secret=tenant.secondary_secret).status_code == 200
    assert live.password_grant(tenant, secret=new_secret).status_code == 200
    assert ("secret.regenerate", "success") in audit_kinds(live, tenant.company_id)


def test_regenerate_asks_for_confirmation_that_names_the_consequence(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        page = browser.sign_in_as(tenant.admin).get(API_TAB).text

    form = re.search(r'<form method="post" action="[^"]+/primary/regenerate"[^>]*>', page).group(0)
    assert "data-confirm=" in form
    assert "will stop working" in form


def test_unknown_secret_slot_is_a_404_page(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        response = browser.post(regenerate("tertiary"))

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")


def test_token_expiry_and_call_limit_are_saved(live: LiveServer) -> None:
    tenant = live.tenant(token_expiry_hours=24, call_limit_per_minute=200)
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        response = browser.post(POLICY, {"token_expiry_hours": "0", "call_limit_per_minute": "350"})
        page = browser.get(response.headers["location"]).text

    assert response.status_code == 303
    assert policy_of(live, tenant.company_id) == (0, 350)
    assert "Token expiry and call limit saved." in page
    assert re.search(r'name="token_expiry_hours"[^>]*value="0"', page)
    assert re.search(r'name="call_limit_per_minute"[^>]*value="350"', page)
    assert ("policy.change", "success") in audit_kinds(live, tenant.company_id)


@pytest.mark.parametrize(
    ("expiry", "limit", "message"),
    [
        ("abc", "200", "Token expiry must be a whole number of hours"),
        ("-1", "200", "Token expiry must be a whole number of hours"),
        ("99999", "200", "Token expiry must be 0 (never expires) to 8784 hours."),
        ("24", "0", "The call limit must be 1 to 1000000 calls per minute."),
        ("24", "1.5", "Call limit must be a whole number of calls per minute."),
        ("", "200", "Token expiry must be a whole number of hours"),
    ],
)
def test_invalid_policy_shows_the_problem_and_keeps_what_was_saved(
    live: LiveServer, expiry: str, limit: str, message: str
) -> None:
    tenant = live.tenant(token_expiry_hours=24, call_limit_per_minute=200)
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        response = browser.post(
            POLICY, {"token_expiry_hours": expiry, "call_limit_per_minute": limit}
        )

    assert response.status_code == 400
    assert message in response.text
    assert 'aria-invalid="true"' in response.text
    assert re.search(rf'name="token_expiry_hours"[^>]*value="{re.escape(expiry)}"', response.text)
    assert policy_of(live, tenant.company_id) == (24, 200)


def test_operator_cannot_change_the_policy_or_see_secrets(live: LiveServer) -> None:
    tenant = live.tenant(token_expiry_hours=24, call_limit_per_minute=200)
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        policy = browser.post(POLICY, {"token_expiry_hours": "0", "call_limit_per_minute": "9"})
        secret = browser.post(show("primary"), {"password": tenant.operator.password})
        regenerated = browser.post(regenerate("primary"))

    assert policy.status_code == secret.status_code == regenerated.status_code == 403
    assert tenant.primary_secret not in secret.text
    assert policy_of(live, tenant.company_id) == (24, 200)
    assert live.password_grant(tenant).status_code == 200


def test_admin_acts_only_on_their_own_company(live: LiveServer) -> None:
    ours, theirs = live.tenant(), live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(ours.admin)
        page = browser.get(API_TAB).text
        browser.post(regenerate("primary"))

    assert theirs.client_id not in page
    assert live.password_grant(theirs).status_code == 200


def test_changes_record_who_made_them(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        browser.post(POLICY, {"token_expiry_hours": "12", "call_limit_per_minute": "100"})
        browser.post(regenerate("secondary"))

    with live.services.database.session() as session:
        events = session.scalars(
            select(AuditEvent).where(
                AuditEvent.company_id == tenant.company_id,
                AuditEvent.kind.in_(["policy.change", "secret.regenerate"]),
            )
        ).all()
    assert {event.kind for event in events} == {"policy.change", "secret.regenerate"}
    assert all(event.actor_id == tenant.admin.id for event in events)
    assert all(tenant.secondary_secret not in str(event.detail) for event in events)
