"""User Settings → General: operators change their own password."""

import threading
from typing import Any

import pytest

import erpauth.web.user_settings
from erpauth.domain.errors import Conflict
from erpauth.domain.operators import find_operator, force_password_change, get_operator
from tests.lifecycle import audit_events, cli_json, refresh, token_pair
from tests.support import LiveServer
from tests.web_support import SESSION_COOKIE, Browser

CHANGE = "/settings/user/password"
NEW = "a-brand-new-password-1"


def change_form(current: str, new: str = NEW, confirm: str | None = None) -> dict[str, str]:
    return {
        "current_password": current,
        "new_password": new,
        "confirm_password": new if confirm is None else confirm,
    }


def test_general_tab_is_found_at_the_address_system_settings_gives_its_own(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        guessed = browser.get("/settings/user/general")
        general = browser.get("/settings/user")

    assert guessed.status_code == 303
    assert guessed.headers["location"] == "/settings/user"
    assert general.status_code == 200
    assert "Change password" in general.text


def test_changing_the_password_keeps_this_browser_and_ends_other_browsers_and_tokens(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    operator = tenant.operator
    pair = token_pair(live, tenant)
    with Browser(live) as here, Browser(live) as elsewhere:
        web_token = here.sign_in_as(operator).generate_token(operator)
        elsewhere.sign_in_as(operator)
        old_session = here.session_id
        response = here.post(CHANGE, change_form(operator.password))
        here_after = here.get("/home")
        elsewhere_after = elsewhere.get("/home")
        confirmation = here.get(response.headers["location"]).text

    assert response.status_code == 303
    assert response.headers["location"] == "/settings/user"
    assert SESSION_COOKIE in response.headers["set-cookie"], "a new session id"
    assert here.session_id != old_session
    assert here_after.status_code == 200
    assert elsewhere_after.status_code == 303
    assert elsewhere_after.headers["location"].startswith("/signin")
    assert "Your password was changed." in confirmation
    assert live.me(web_token).status_code == 401
    assert live.me(pair["access_token"]).status_code == 401
    assert refresh(live, tenant, pair["refresh_token"]).status_code == 400
    with Browser(live) as fresh:
        assert fresh.sign_in(operator.email, operator.password).status_code == 400
        assert fresh.sign_in(operator.email, NEW).status_code == 303


def test_password_change_is_audited_without_either_password(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        browser.post(CHANGE, change_form("not-the-password-1"))
        browser.post(CHANGE, change_form(tenant.operator.password))

    refused, changed = audit_events(live, tenant.company_id, "password.change")
    assert (refused.outcome, refused.detail["reason"]) == ("refused", "wrong_current_password")
    assert changed.outcome == "success"
    assert changed.actor_id == changed.operator_id == tenant.operator.id
    stored = str(vars(refused)) + str(vars(changed))
    assert NEW not in stored and tenant.operator.password not in stored


def test_a_wrong_current_password_changes_nothing(live: LiveServer) -> None:
    tenant = live.tenant()
    token = live.access_token(tenant)
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        response = browser.post(CHANGE, change_form("not-the-password-1"))
        still_in = browser.get("/home").status_code

    assert response.status_code == 400
    assert "The current password is wrong." in response.text
    assert 'id="current-password"' in response.text
    assert still_in == 200
    assert live.me(token).status_code == 200
    with Browser(live) as fresh:
        fresh.sign_in_as(tenant.operator)


def test_a_short_or_mistyped_new_password_is_refused_with_the_reason(live: LiveServer) -> None:
    tenant = live.tenant()
    current = tenant.operator.password
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        short = browser.post(CHANGE, change_form(current, "short"))
        mistyped = browser.post(CHANGE, change_form(current, NEW, NEW + "x"))

    assert short.status_code == mistyped.status_code == 400
    assert "The password must be at least 12 characters long." in short.text
    assert "The new password and its confirmation are not the same." in mistyped.text
    with Browser(live) as fresh:
        fresh.sign_in_as(tenant.operator)


def test_changing_the_password_needs_the_csrf_token(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        response = browser.post(CHANGE, change_form(tenant.operator.password), csrf=False)

    assert response.status_code == 403
    with Browser(live) as fresh:
        fresh.sign_in_as(tenant.operator)


def test_changing_the_password_needs_a_signed_in_browser(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        response = browser.post(CHANGE, change_form(tenant.operator.password), csrf=False)

    assert response.status_code == 303
    assert response.headers["location"].startswith("/signin")


def test_a_password_forced_by_an_administrator_during_the_check_is_not_overwritten(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = live.tenant()
    forced: list[str] = []
    check = erpauth.web.user_settings.check_password_again

    def administrator_acts_meanwhile(*args: Any, **kwargs: Any) -> bool:
        password_ok = check(*args, **kwargs)
        with live.services.database.session() as session:
            operator = get_operator(session, tenant.operator.email)
            forced.append(force_password_change(session, live.services.hasher, operator))
        return password_ok

    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        monkeypatch.setattr(
            erpauth.web.user_settings, "check_password_again", administrator_acts_meanwhile
        )
        response = browser.post(CHANGE, change_form(tenant.operator.password))
        after = browser.get("/home")

    assert response.status_code == 409
    assert "changed elsewhere just now" in response.text
    assert after.status_code == 303, "the forced change signed this browser out"
    with Browser(live) as fresh:
        assert fresh.sign_in(tenant.operator.email, NEW).status_code == 400
        assert fresh.sign_in(tenant.operator.email, forced[0]).status_code == 303


def test_a_password_set_with_the_command_signs_the_operator_out_of_every_browser(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    with Browser(live) as stolen:
        # Someone else has the administrator's session; the password is reset to lock them out.
        stolen.sign_in_as(tenant.admin)
        csrf = stolen.csrf()
        reset = cli_json(live, "operator-set-password", tenant.admin.email)
        home = stolen.get("/home")
        create = stolen.http.post(
            "/users",
            data={"csrf_token": csrf, "email": "stays@example.com", "is_system_admin": "on"},
        )

    assert reset["password"]
    assert home.status_code == 303
    assert home.headers["location"].startswith("/signin")
    assert create.status_code == 303, "the old session can make no operator"
    with live.services.database.session() as session:
        assert find_operator(session, "stays@example.com") is None


def test_a_password_forced_while_the_own_change_is_saved_is_never_shown_unless_stored(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The administrator forces a new password just as the operator's own change, checked
    already, is being saved: one of the two wins, and the administrator is never shown a
    password that the other then overwrote."""
    tenant = live.tenant()
    save = erpauth.web.user_settings.set_password
    shown: list[str] = []
    refused: list[Conflict] = []

    def force_change() -> None:
        with live.services.database.session() as session:
            operator = get_operator(session, tenant.operator.email)
            try:
                shown.append(force_password_change(session, live.services.hasher, operator))
            except Conflict as exc:
                refused.append(exc)

    change = threading.Thread(target=force_change)

    def administrator_acts_meanwhile(*args: Any, **kwargs: Any) -> None:
        change.start()
        change.join(timeout=2)  # as long as it takes, unless it must wait for this change
        save(*args, **kwargs)

    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        monkeypatch.setattr(erpauth.web.user_settings, "set_password", administrator_acts_meanwhile)
        browser.post(CHANGE, change_form(tenant.operator.password))
        change.join(timeout=30)
        monkeypatch.undo()

    assert len(shown + refused) == 1
    with Browser(live) as fresh:
        if shown:
            assert fresh.sign_in(tenant.operator.email, shown[0]).status_code == 303
        else:
            assert fresh.sign_in(tenant.operator.email, NEW).status_code == 303
