"""Users: administrators list, create, activate, deactivate operators, grant API permission
and force password changes."""

import threading

import pytest
from sqlalchemy import func, select

from erpauth.domain.errors import Conflict
from erpauth.domain.operators import find_operator, force_password_change
from erpauth.storage.models import Operator
from tests.lifecycle import audit_events, cli_json, refresh, token_pair
from tests.support import LiveServer
from tests.web_support import (
    Browser,
    audit_kinds,
    live_web_tokens,
    new_password_on,
    password_version_on,
)

USERS = "/users"


def operator_row(live: LiveServer, email: str) -> Operator | None:
    with live.services.database.session() as session:
        return find_operator(session, email)


def test_admin_sees_their_company_operators_with_status_and_api_permission(
    live: LiveServer,
) -> None:
    ours, theirs = live.tenant(), live.tenant()
    clerk = live.add_operator(ours, "clerk", api_permission=False)
    with Browser(live) as browser:
        page = browser.sign_in_as(ours.admin).get(USERS).text

    for operator in (ours.admin, ours.operator, clerk):
        assert operator.email in page
    for operator in theirs.operators.values():
        assert operator.email not in page
    assert "Active" in page
    assert "Grant API" in page  # the clerk has no API permission
    assert "Revoke API" in page


def test_created_operator_gets_a_password_shown_once_that_signs_in(live: LiveServer) -> None:
    tenant = live.tenant()
    email = f"new.{tenant.code.lower()}@example.com"
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        response = browser.post(
            USERS, {"email": email, "display_name": "New Person", "api_permission": "on"}
        )
        later = browser.get(USERS).text

    assert response.status_code == 200
    password = new_password_on(response.text)
    assert password is not None
    assert password not in later
    created = operator_row(live, email)
    assert created.company_id == tenant.company_id
    assert created.api_permission and not created.is_system_admin
    assert created.display_name == "New Person"
    with Browser(live) as newcomer:
        assert newcomer.sign_in(email, password).status_code == 303
    assert ("operator.create", "success") in audit_kinds(live, tenant.company_id)


def test_creating_the_same_email_again_changes_nothing(live: LiveServer) -> None:
    tenant = live.tenant()
    email = f"twice.{tenant.code.lower()}@example.com"
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        first = browser.post(USERS, {"email": email})
        again = browser.post(USERS, {"email": email.upper(), "api_permission": "on"})

    assert first.status_code == again.status_code == 200
    assert "exists already" in again.text
    assert new_password_on(again.text) is None
    assert operator_row(live, email).api_permission is False
    with Browser(live) as newcomer:
        assert newcomer.sign_in(email, new_password_on(first.text)).status_code == 303


def test_two_creates_at_once_make_one_operator_and_no_error(live: LiveServer) -> None:
    tenant = live.tenant()
    email = f"race.{tenant.code.lower()}@example.com"
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        form = {"email": email, "csrf_token": browser.csrf()}
        statuses: list[int] = []
        start = threading.Barrier(4, timeout=30)

        def click() -> None:
            with live.client(cookies=dict(browser.http.cookies)) as http:
                start.wait()
                statuses.append(http.post(USERS, data=form).status_code)

        threads = [threading.Thread(target=click) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

    assert statuses == [200] * 4
    with live.services.database.session() as session:
        count = session.scalar(
            select(func.count()).select_from(Operator).where(Operator.email_key == email)
        )
    assert count == 1


def test_bad_email_shows_the_form_again_with_the_problem(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        response = browser.post(
            USERS, {"email": "not-an-address", "display_name": "Kept Name", "api_permission": "on"}
        )

    assert response.status_code == 400
    assert "is not an e-mail address" in response.text
    assert 'value="not-an-address"' in response.text
    assert 'value="Kept Name"' in response.text
    assert 'id="create-api" name="api_permission" type="checkbox" value="on" checked' in (
        response.text
    )
    assert "data-open-on-load" in response.text


def test_email_of_another_companys_operator_is_refused_as_in_use(live: LiveServer) -> None:
    ours, theirs = live.tenant(), live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(ours.admin)
        response = browser.post(USERS, {"email": theirs.operator.email})

    assert response.status_code == 409
    assert "already in use" in response.text
    assert operator_row(live, theirs.operator.email).company_id == theirs.company_id


def test_deactivating_stops_tokens_and_sessions_and_activating_lets_them_back(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    token = live.access_token(tenant)
    with Browser(live) as admin, Browser(live) as operator:
        admin.sign_in_as(tenant.admin)
        operator.sign_in_as(tenant.operator)
        response = admin.post(f"{USERS}/{tenant.operator.id}/active", {"value": "off"})
        page = admin.get(response.headers["location"]).text

        assert response.status_code == 303
        assert "The operator was deactivated" in page
        assert live.me(token).status_code == 401
        assert operator.get("/home").headers["location"].startswith("/signin")
        assert operator.sign_in(tenant.operator.email, tenant.operator.password).status_code == 400

        admin.post(f"{USERS}/{tenant.operator.id}/active", {"value": "on"})
        assert operator.sign_in(tenant.operator.email, tenant.operator.password).status_code == 303

    kinds = audit_kinds(live, tenant.company_id)
    assert ("operator.deactivate", "success") in kinds
    assert ("operator.activate", "success") in kinds


def test_granted_operator_can_generate_and_revoked_operator_token_stops(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    clerk = live.add_operator(tenant, "clerk", api_permission=False)
    with Browser(live) as admin, Browser(live) as operator:
        admin.sign_in_as(tenant.admin)
        operator.sign_in_as(clerk)
        granted = admin.post(f"{USERS}/{clerk.id}/api-permission", {"value": "on"})
        token = operator.generate_token(clerk)
        assert live.me(token).status_code == 200

        revoked = admin.post(f"{USERS}/{clerk.id}/api-permission", {"value": "off"})
        page = operator.get("/settings/user/api").text

    assert granted.status_code == revoked.status_code == 303
    assert live.me(token).status_code == 401
    assert "You do not have API permission" in page
    kinds = audit_kinds(live, tenant.company_id)
    assert ("permission.grant", "success") in kinds
    assert ("permission.revoke", "success") in kinds


def test_force_password_change_shows_a_new_one_once_and_ends_tokens_and_sessions(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    pair = token_pair(live, tenant)
    admins_token = live.access_token(tenant, tenant.admin)
    with Browser(live) as admin, Browser(live) as operator:
        admin.sign_in_as(tenant.admin)
        operator.sign_in_as(tenant.operator)
        response = admin.force_password_change(tenant.operator.id)
        later = admin.get(USERS).text
        signed_out = operator.get("/home")

    password = new_password_on(response.text)
    assert response.status_code == 200
    assert password is not None and password not in later
    assert "Their access tokens have stopped working" in response.text
    assert signed_out.headers["location"].startswith("/signin")
    assert live.me(pair["access_token"]).status_code == 401
    assert refresh(live, tenant, pair["refresh_token"]).status_code == 400
    assert live.me(admins_token).status_code == 200, "only that operator's tokens end"
    with Browser(live) as fresh:
        assert fresh.sign_in(tenant.operator.email, tenant.operator.password).status_code == 400
        assert fresh.sign_in(tenant.operator.email, password).status_code == 303
    [event] = audit_events(live, tenant.company_id, "password.change")
    assert (event.actor_id, event.operator_id) == (tenant.admin.id, tenant.operator.id)
    assert event.detail["forced"] is True
    assert password not in str(vars(event))


def test_admin_cannot_force_a_password_change_of_their_own_account(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        page = browser.get(USERS).text
        response = browser.post(f"{USERS}/{tenant.admin.id}/password")

    assert f"/users/{tenant.admin.id}/password" not in page
    assert response.status_code == 400
    assert "Change your own password in User Settings." in response.text
    with Browser(live) as fresh:
        fresh.sign_in_as(tenant.admin)


def test_force_password_change_needs_the_csrf_token(live: LiveServer) -> None:
    tenant = live.tenant()
    token = live.access_token(tenant)
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        response = browser.post(f"{USERS}/{tenant.operator.id}/password", csrf=False)

    assert response.status_code == 403
    assert new_password_on(response.text) is None
    assert live.me(token).status_code == 200


def test_admin_cannot_change_an_operator_of_another_company(live: LiveServer) -> None:
    ours, theirs = live.tenant(), live.tenant()
    token = live.access_token(theirs)
    with Browser(live) as browser:
        browser.sign_in_as(ours.admin)
        responses = [
            browser.post(f"{USERS}/{theirs.operator.id}/active", {"value": "off"}),
            browser.post(f"{USERS}/{theirs.operator.id}/api-permission", {"value": "off"}),
            browser.post(f"{USERS}/{theirs.operator.id}/password"),
        ]

    for response in responses:
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
    assert live.me(token).status_code == 200
    row = operator_row(live, theirs.operator.email)
    assert row.is_active and row.api_permission


def test_admin_cannot_deactivate_themselves(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        page = browser.get(USERS).text
        response = browser.post(f"{USERS}/{tenant.admin.id}/active", {"value": "off"})
        still_in = browser.get("/home").status_code

    assert f"/users/{tenant.admin.id}/active" not in page
    assert response.status_code == 400
    assert "cannot deactivate your own account" in response.text
    assert still_in == 200
    assert operator_row(live, tenant.admin.email).is_active


def test_operators_cannot_use_the_users_actions(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        create = browser.post(USERS, {"email": f"x.{tenant.code.lower()}@example.com"})
        deactivate = browser.post(f"{USERS}/{tenant.admin.id}/active", {"value": "off"})

    assert create.status_code == deactivate.status_code == 403
    assert operator_row(live, tenant.admin.email).is_active


def test_users_actions_need_the_csrf_token(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        response = browser.post(
            f"{USERS}/{tenant.operator.id}/active", {"value": "off"}, csrf=False
        )

    assert response.status_code == 403
    assert operator_row(live, tenant.operator.email).is_active


def test_web_tokens_of_a_deactivated_operator_stop_working(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as admin, Browser(live) as operator:
        token = operator.sign_in_as(tenant.operator).generate_token(tenant.operator)
        admin.sign_in_as(tenant.admin).post(
            f"{USERS}/{tenant.operator.id}/active", {"value": "off"}
        )

    assert live.me(token).status_code == 401
    assert live_web_tokens(live, tenant.operator.id) == []


def test_a_force_password_change_that_lost_to_another_shows_no_password(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    with Browser(live) as first, Browser(live) as second:
        first.sign_in_as(tenant.admin)
        second.sign_in_as(tenant.admin)
        # Both administrators have the Users page open, made before either change.
        seen = password_version_on(second.get(USERS).text, tenant.operator.id)
        won = first.force_password_change(tenant.operator.id)
        lost = second.post(f"{USERS}/{tenant.operator.id}/password", {"password_version": seen})
        after = second.force_password_change(tenant.operator.id)

    assert won.status_code == 200
    assert lost.status_code == 409
    assert new_password_on(lost.text) is None
    assert "The password was changed by someone else just now" in lost.text
    assert after.status_code == 200, "from the page as it is now, a new change goes through"
    password = new_password_on(after.text)
    with Browser(live) as fresh:
        assert fresh.sign_in(tenant.operator.email, password).status_code == 303


def test_force_password_changes_at_once_show_only_the_password_that_is_stored(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    admins = [Browser(live).sign_in_as(tenant.admin) for _ in range(2)]
    page = admins[0].get(USERS).text
    form = {"password_version": password_version_on(page, tenant.operator.id)}
    clicks = [(dict(admin.http.cookies), admin.csrf()) for admin in admins for _ in range(3)]
    answers: list[tuple[int, str]] = []
    start = threading.Barrier(len(clicks), timeout=30)

    def click(cookies: dict[str, str], csrf: str) -> None:
        with live.client(cookies=cookies) as http:
            start.wait()
            response = http.post(
                f"{USERS}/{tenant.operator.id}/password", data=form | {"csrf_token": csrf}
            )
            answers.append((response.status_code, response.text))

    threads = [threading.Thread(target=click, args=click_args) for click_args in clicks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for admin in admins:
        admin.http.close()

    shown = [new_password_on(text) for status, text in answers if status == 200]
    assert sorted(status for status, _ in answers) == [200] + [409] * (len(clicks) - 1)
    assert shown[0] is not None
    with Browser(live) as fresh:
        assert fresh.sign_in(tenant.operator.email, shown[0]).status_code == 303
    assert len(audit_events(live, tenant.company_id, "password.change")) == 1


def test_a_force_password_change_overtaken_inside_its_transaction_changes_nothing(
    live: LiveServer,
) -> None:
    # The same race without the page's version (as `erpauth operator-force-password-change`
    # runs): the operator was read, then another change committed before this one wrote.
    tenant = live.tenant()
    database, hasher = live.services.database, live.services.hasher
    with pytest.raises(Conflict, match="changed by someone else"), database.session() as late:
        overtaken = late.get(Operator, tenant.operator.id)
        with database.session() as first:
            winner = force_password_change(first, hasher, first.get(Operator, overtaken.id))
        force_password_change(late, hasher, overtaken)

    with Browser(live) as fresh:
        assert fresh.sign_in(tenant.operator.email, winner).status_code == 303


def test_an_operator_deactivated_and_activated_again_with_the_command_is_signed_out(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    with Browser(live) as operator:
        operator.sign_in_as(tenant.operator)
        # No request of that browser comes between the two commands.
        cli_json(live, "operator-deactivate", tenant.operator.email)
        cli_json(live, "operator-activate", tenant.operator.email)
        home = operator.get("/home")

    assert home.status_code == 303
    assert home.headers["location"].startswith("/signin")
