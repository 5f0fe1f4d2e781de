"""The sign-in page and the password dialogs go through the brute-force guard and sign-in limits.

Addresses are played by connecting from different loopback addresses (127.0.0.x).
"""

import re
import time

import httpx
import pytest
from sqlalchemy import select

from erpauth.storage.models import AuditEvent
from tests.conftest import StartServer
from tests.support import LiveServer, Tenant, inside_one_window
from tests.web_support import SESSION_COOKIE, Browser


@pytest.fixture(autouse=True)
def _clear_of_a_window_edge() -> None:
    inside_one_window()


ATTACKER = "127.0.0.2"
ELSEWHERE = "127.0.0.3"
WRONG = "not-the-password-at-all"

# Two failures start the delay, three lock the account for that address.
GUARD = {
    "signin_failures_before_delay": 2,
    "signin_delay_seconds": 1,
    "signin_failures_before_lockout": 3,
    "signin_lockout_seconds": 120,
}


def wait_out(response: httpx.Response) -> None:
    time.sleep(int(response.headers["Retry-After"]) + 0.2)


def guess_until_locked(server: LiveServer, email: str) -> list[httpx.Response]:
    """Wrong passwords on the sign-in page from the attacker's address, up to the lockout."""
    with Browser(server, source=ATTACKER) as attacker:
        answers = [attacker.sign_in(email, WRONG) for _ in range(3)]
        wait_out(answers[-1])
        answers.append(attacker.sign_in(email, WRONG))
    return answers


def events(server: LiveServer, tenant: Tenant, kind: str) -> list[AuditEvent]:
    with server.services.database.session() as session:
        return list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.company_id == tenant.company_id, AuditEvent.kind == kind)
                .order_by(AuditEvent.id)
            )
        )


def test_wrong_passwords_on_the_sign_in_page_are_delayed_then_locked_with_a_429_page(
    start_server: StartServer,
) -> None:
    server = start_server(**GUARD)
    tenant = server.tenant()

    first, second, too_soon, locking = guess_until_locked(server, tenant.operator.email)
    with Browser(server, source=ATTACKER) as attacker:
        right_password_there = attacker.sign_in(tenant.operator.email, tenant.operator.password)

    assert first.status_code == second.status_code == 400
    assert too_soon.status_code == 429
    assert too_soon.headers["content-type"].startswith("text/html")
    seconds = too_soon.headers["Retry-After"]
    assert f"Please wait {seconds} second" in too_soon.text
    assert locking.status_code == 429
    assert 100 <= int(locking.headers["Retry-After"]) <= 120
    assert "This account is locked for sign-ins from your address" in locking.text
    assert f"({locking.headers['Retry-After']} seconds)" in locking.text
    assert right_password_there.status_code == 429
    assert SESSION_COOKIE not in right_password_there.headers.get("set-cookie", "")


def test_an_operator_at_another_address_signs_in_while_an_attacker_is_locked_out(
    start_server: StartServer,
) -> None:
    server = start_server(**GUARD)
    tenant = server.tenant()
    assert guess_until_locked(server, tenant.operator.email)[-1].status_code == 429

    with Browser(server, source=ELSEWHERE) as operator:
        response = operator.sign_in(tenant.operator.email, tenant.operator.password)

    assert response.status_code == 303
    assert response.headers["location"] == "/home"


def test_an_unknown_email_is_delayed_and_locked_on_the_sign_in_page_like_a_known_one(
    start_server: StartServer,
) -> None:
    server = start_server(**GUARD)
    tenant = server.tenant()
    unknown = f"nobody.{tenant.code.lower()}@example.com"

    def answers(email: str) -> list[tuple[int, str]]:
        def message(response: httpx.Response) -> str:
            found = re.search(r'id="signin-error">([^<]*)<', response.text)
            assert found, response.text
            return re.sub(r"\d+", "N", found.group(1))

        return [(r.status_code, message(r)) for r in guess_until_locked(server, email)]

    assert answers(tenant.operator.email) == answers(unknown)


def test_sign_ins_beyond_the_per_address_limit_get_a_429_page_and_other_addresses_do_not(
    start_server: StartServer,
) -> None:
    server = start_server(signin_requests_per_ip_per_minute=2)
    tenant = server.tenant()

    with Browser(server, source=ATTACKER) as busy:
        allowed = [busy.sign_in(tenant.admin.email, WRONG).status_code for _ in range(2)]
        refused = busy.sign_in(tenant.operator.email, tenant.operator.password)
    with Browser(server, source=ELSEWHERE) as operator:
        elsewhere = operator.sign_in(tenant.operator.email, tenant.operator.password)

    assert allowed == [400, 400]
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert "Too many sign-in attempts from your address" in refused.text
    assert elsewhere.status_code == 303


def test_sign_ins_and_lockouts_are_audited_once_each_without_the_password(
    start_server: StartServer,
) -> None:
    server = start_server(**GUARD)
    tenant = server.tenant()
    guess_until_locked(server, tenant.operator.email)
    with Browser(server, source=ELSEWHERE) as operator:
        operator.sign_in_as(tenant.operator)

    signins = events(server, tenant, "web.signin")
    [lockout] = events(server, tenant, "signin.lockout")
    [held] = events(server, tenant, "signin.throttled")

    # Guesses 1, 2 and 4 were checked; the third was held back by the guard, not checked.
    assert [(e.outcome, e.ip_address) for e in signins] == [
        ("refused", ATTACKER),
        ("refused", ATTACKER),
        ("refused", ATTACKER),
        ("success", ELSEWHERE),
    ]
    assert (lockout.ip_address, lockout.detail["channel"]) == (ATTACKER, "web")
    assert lockout.operator_id == tenant.operator.id
    assert held.detail["limit"] == "signin_delay"
    stored = " ".join(str(vars(e)) for e in [*signins, lockout, held])
    assert WRONG not in stored
    assert tenant.operator.password not in stored


def test_guesses_in_the_token_sign_in_window_lock_that_address_out_of_the_sign_in_page(
    start_server: StartServer,
) -> None:
    server = start_server(**GUARD)
    tenant = server.tenant()
    operator = tenant.operator
    form = {"email": operator.email, "password": WRONG}

    with Browser(server, source=ATTACKER) as stolen_session:
        stolen_session.sign_in_as(operator)
        guesses = [stolen_session.post("/settings/user/api/token", form) for _ in range(3)]
        wait_out(guesses[-1])
        locking = stolen_session.post("/settings/user/api/token", form)
    with Browser(server, source=ATTACKER) as there, Browser(server, source=ELSEWHERE) as away:
        sign_in_there = there.sign_in(operator.email, operator.password)
        sign_in_elsewhere = away.sign_in(operator.email, operator.password)

    assert [g.status_code for g in guesses] == [400, 400, 429]
    assert "Please wait" in guesses[-1].text
    assert 'id="reauth-error"' in guesses[-1].text, "the sign-in window shows why"
    assert locking.status_code == 429
    assert "locked" in locking.text
    assert "Retry-After" in locking.headers
    assert sign_in_there.status_code == 429
    assert sign_in_elsewhere.status_code == 303
    assert [e.detail["purpose"] for e in events(server, tenant, "web.reauth")] == [
        "access_token"
    ] * 3


def test_show_secret_guesses_are_held_back_and_reveal_nothing(start_server: StartServer) -> None:
    server = start_server(**GUARD)
    tenant = server.tenant()

    with Browser(server, source=ATTACKER) as browser:
        browser.sign_in_as(tenant.admin)
        show = "/settings/system/api/secrets/primary/show"
        answers = [browser.post(show, {"password": WRONG}) for _ in range(3)]
        later = browser.post(show, {"password": tenant.admin.password})

    assert [a.status_code for a in answers] == [400, 400, 429]
    assert later.status_code == 429, "the right password waits its turn too"
    for answer in [*answers, later]:
        assert tenant.primary_secret not in answer.text
    assert [e.outcome for e in events(server, tenant, "secret.show")] == ["refused"] * 2


def test_change_password_guesses_are_held_back_and_change_nothing(
    start_server: StartServer,
) -> None:
    server = start_server(**GUARD)
    tenant = server.tenant()
    new = "a-brand-new-password-1"
    form = {"current_password": WRONG, "new_password": new, "confirm_password": new}

    with Browser(server, source=ATTACKER) as browser:
        browser.sign_in_as(tenant.operator)
        answers = [browser.post("/settings/user/password", form) for _ in range(3)]

    assert [a.status_code for a in answers] == [400, 400, 429]
    assert "The current password is wrong." in answers[0].text
    assert "Please wait" in answers[-1].text
    with Browser(server, source=ELSEWHERE) as fresh:
        assert fresh.sign_in(tenant.operator.email, new).status_code == 400
        assert fresh.sign_in(tenant.operator.email, tenant.operator.password).status_code == 303
