"""Token endpoint limits per IP and per client, and the brute-force guard on passwords.

Revocation and introspection authenticate the client with its secret too, and count against
the same limits; so does every refresh, whether its refresh token is valid or not.
"""

import time

import httpx
import pytest
from sqlalchemy import select

from erpauth.abuse import SignInAttempt, Throttled
from erpauth.domain.audit import Origin
from erpauth.domain.refresh_tokens import find_refresh_token
from erpauth.storage.models import AuditEvent
from tests.conftest import StartServer
from tests.lifecycle import INTROSPECT_PATH, REVOKE_PATH
from tests.support import TOKEN_PATH, LiveServer, Tenant, inside_one_window


@pytest.fixture(autouse=True)
def _clear_of_a_window_edge() -> None:
    inside_one_window()


ATTACKER = "127.0.0.2"
ELSEWHERE = "127.0.0.3"

# Small thresholds: two failures start the delay, three lock the account for that address.
GUARD = {
    "signin_failures_before_delay": 2,
    "signin_delay_seconds": 1,
    "signin_failures_before_lockout": 3,
    "signin_lockout_seconds": 120,
}


def grant(
    server: LiveServer,
    tenant: Tenant,
    *,
    username: str | None = None,
    password: str | None = None,
    source: str = "127.0.0.1",
) -> httpx.Response:
    form = {
        "grant_type": "password",
        "username": username or tenant.operator.email,
        "password": password or tenant.operator.password,
    }
    transport = httpx.HTTPTransport(local_address=source)
    with server.client(transport=transport) as http:
        return http.post(TOKEN_PATH, auth=(tenant.client_id, tenant.primary_secret), data=form)


def post_from(
    server: LiveServer, source: str, path: str, auth: tuple[str, str], form: dict[str, str]
) -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=source)
    with server.client(transport=transport) as http:
        return http.post(path, auth=auth, data=form)


def refresh_from(
    server: LiveServer, tenant: Tenant, refresh_token: str, source: str
) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return post_from(server, source, TOKEN_PATH, (tenant.client_id, tenant.primary_secret), form)


def wrong(server: LiveServer, tenant: Tenant, **kwargs: str) -> httpx.Response:
    return grant(server, tenant, password="not-the-password-at-all", **kwargs)


def wait_out(response: httpx.Response) -> None:
    time.sleep(int(response.headers["Retry-After"]) + 0.2)


def audit_events(server: LiveServer, tenant: Tenant, kind: str) -> list[AuditEvent]:
    with server.services.database.session() as session:
        return list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.company_id == tenant.company_id, AuditEvent.kind == kind)
                .order_by(AuditEvent.id)
            )
        )


def test_token_requests_beyond_the_per_ip_limit_get_an_oauth_style_429(
    start_server: StartServer,
) -> None:
    server = start_server(token_requests_per_ip_per_minute=3)
    tenant = server.tenant()

    allowed = [grant(server, tenant).status_code for _ in range(3)]
    refused = grant(server, tenant)
    from_elsewhere = grant(server, tenant, source=ELSEWHERE)

    assert allowed == [200, 200, 200]
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["Cache-Control"] == "no-store"
    assert refused.json()["error"] == "too_many_requests"
    assert refused.json()["limit"] == "token_requests_per_ip"
    assert "error_description" in refused.json()
    assert refused.headers["RateLimit-Policy"] == '"token_requests_per_ip";q=3;w=60'
    assert refused.headers["RateLimit"].startswith('"token_requests_per_ip";r=0;t=')
    assert from_elsewhere.status_code == 200


def test_token_requests_count_per_client_whether_it_came_in_the_header_or_the_body(
    start_server: StartServer,
) -> None:
    server = start_server(token_requests_per_client_per_minute=2)
    tenant, other = server.tenant(), server.tenant()
    in_body = {
        "grant_type": "password",
        "username": tenant.operator.email,
        "password": tenant.operator.password,
        "client_id": tenant.client_id,
        "client_secret": tenant.primary_secret,
    }

    with server.client() as http:
        first = http.post(TOKEN_PATH, data=in_body)
    second = grant(server, tenant, source=ATTACKER)
    third = grant(server, tenant, source=ELSEWHERE)

    assert (first.status_code, second.status_code) == (200, 200)
    assert third.status_code == 429
    assert third.json()["limit"] == "token_requests_per_client"
    assert grant(server, other).status_code == 200


def test_per_client_limit_hits_are_audited_for_the_client_company(
    start_server: StartServer,
) -> None:
    server = start_server(token_requests_per_client_per_minute=1)
    tenant = server.tenant()

    statuses = [grant(server, tenant).status_code for _ in range(3)]

    assert statuses == [200, 429, 429]
    [event] = audit_events(server, tenant, "ratelimit.hit")
    assert event.client_id == tenant.client_id
    assert event.detail["limit"] == "token_requests_per_client"


# --- revocation, introspection and refreshes count as token requests ---------------------


def test_guessed_secrets_at_revocation_and_introspection_use_up_the_client_limit(
    start_server: StartServer,
) -> None:
    server = start_server(token_requests_per_client_per_minute=4)
    tenant, other = server.tenant(), server.tenant()
    token = server.access_token(tenant)
    guessed = (tenant.client_id, "a-guessed-client-secret")
    right = (tenant.client_id, tenant.primary_secret)

    guesses = [
        post_from(server, ATTACKER, REVOKE_PATH, guessed, {"token": token}),
        post_from(server, ELSEWHERE, INTROSPECT_PATH, guessed, {"token": token}),
        post_from(server, "127.0.0.4", REVOKE_PATH, guessed, {"token": token}),
    ]
    with_the_secret = post_from(server, "127.0.0.5", INTROSPECT_PATH, right, {"token": token})
    sign_in = grant(server, tenant, source="127.0.0.6")

    assert [guess.status_code for guess in guesses] == [401, 401, 401]
    assert with_the_secret.status_code == 429
    assert with_the_secret.json()["limit"] == "token_requests_per_client"
    assert "active" not in with_the_secret.json()
    # One budget for every request that checks this client's secret.
    assert sign_in.status_code == 429
    assert grant(server, other).status_code == 200
    assert server.me(token).status_code == 200


def test_revocation_and_introspection_count_against_the_ip_limit(
    start_server: StartServer,
) -> None:
    server = start_server(token_requests_per_ip_per_minute=3)
    tenant = server.tenant()
    token = grant(server, tenant, source=ELSEWHERE).json()["access_token"]
    client = (tenant.client_id, tenant.primary_secret)

    looked_up = [
        post_from(server, ATTACKER, INTROSPECT_PATH, client, {"token": token}) for _ in range(3)
    ]
    refused = post_from(server, ATTACKER, REVOKE_PATH, client, {"token": token})
    still_valid = server.me(token)
    from_elsewhere = post_from(server, ELSEWHERE, REVOKE_PATH, client, {"token": token})

    assert [response.json()["active"] for response in looked_up] == [True, True, True]
    assert refused.status_code == 429
    assert refused.json()["limit"] == "token_requests_per_ip"
    assert still_valid.status_code == 200
    assert from_elsewhere.status_code == 200
    assert server.me(token).status_code == 401


def test_invalid_refresh_tokens_use_up_the_client_limit(start_server: StartServer) -> None:
    server = start_server(token_requests_per_client_per_minute=3)
    tenant = server.tenant()
    pair = grant(server, tenant).json()

    invalid = [refresh_from(server, tenant, f"guess-{n}", source=ATTACKER) for n in range(2)]
    genuine = refresh_from(server, tenant, pair["refresh_token"], source=ELSEWHERE)

    assert [response.status_code for response in invalid] == [400, 400]
    assert {response.json()["error"] for response in invalid} == {"invalid_grant"}
    assert genuine.status_code == 429
    assert genuine.json()["limit"] == "token_requests_per_client"
    with server.services.database.session() as session:
        record = find_refresh_token(session, pair["refresh_token"])
        assert record is not None
        assert record.used_at is None


def test_invalid_refresh_tokens_use_up_the_ip_limit(start_server: StartServer) -> None:
    server = start_server(token_requests_per_ip_per_minute=3)
    tenant = server.tenant()
    pair = grant(server, tenant, source=ELSEWHERE).json()

    invalid = [refresh_from(server, tenant, f"guess-{n}", source=ATTACKER) for n in range(3)]
    genuine_there = refresh_from(server, tenant, pair["refresh_token"], source=ATTACKER)
    genuine_elsewhere = refresh_from(server, tenant, pair["refresh_token"], source=ELSEWHERE)

    assert [response.status_code for response in invalid] == [400, 400, 400]
    assert genuine_there.status_code == 429
    assert genuine_there.json()["limit"] == "token_requests_per_ip"
    # The refused refresh did not spend the refresh token.
    assert genuine_elsewhere.status_code == 200


def test_wrong_passwords_from_one_address_are_delayed_then_locked_for_that_address(
    start_server: StartServer,
) -> None:
    server = start_server(**GUARD)
    tenant = server.tenant()

    first, second = wrong(server, tenant, source=ATTACKER), wrong(server, tenant, source=ATTACKER)
    too_soon = wrong(server, tenant, source=ATTACKER)
    wait_out(too_soon)
    locking = wrong(server, tenant, source=ATTACKER)
    right_password_there = grant(server, tenant, source=ATTACKER)

    assert first.status_code == second.status_code == 400
    assert too_soon.status_code == 429
    assert too_soon.json()["limit"] == "signin_delay"
    assert "wait" in too_soon.json()["error_description"]
    assert locking.status_code == 429
    assert locking.json()["limit"] == "signin_lockout"
    assert "locked" in locking.json()["error_description"]
    assert 100 <= int(locking.headers["Retry-After"]) <= 120
    assert right_password_there.status_code == 429


def test_an_operator_elsewhere_is_not_locked_out_by_an_attackers_guesses(
    start_server: StartServer,
) -> None:
    server = start_server(**GUARD)
    tenant = server.tenant()
    for _ in range(2):
        wrong(server, tenant, source=ATTACKER)
    wait_out(wrong(server, tenant, source=ATTACKER))
    assert wrong(server, tenant, source=ATTACKER).json()["limit"] == "signin_lockout"

    response = grant(server, tenant, source=ELSEWHERE)

    assert response.status_code == 200, response.text


def test_an_unknown_email_is_answered_delayed_and_locked_exactly_like_a_known_one(
    start_server: StartServer,
) -> None:
    server = start_server(**GUARD)
    tenant = server.tenant()

    def attack(username: str) -> list[tuple[int, dict]]:
        answers = [wrong(server, tenant, username=username, source=ATTACKER) for _ in range(3)]
        wait_out(answers[-1])
        answers.append(wrong(server, tenant, username=username, source=ATTACKER))
        answers.append(wrong(server, tenant, username=username, source=ATTACKER))
        return [(r.status_code, _without_seconds(r.json())) for r in answers]

    known = attack(tenant.operator.email)
    unknown = attack(f"nobody.{tenant.code.lower()}@example.com")

    assert known == unknown
    assert [status for status, _ in known] == [400, 400, 429, 429, 429]


def test_guesses_spread_over_many_addresses_lock_the_account_everywhere(
    start_server: StartServer,
) -> None:
    server = start_server(
        signin_failures_before_delay=5,
        signin_failures_before_lockout=5,
        signin_account_failures_before_lockout=4,
        signin_lockout_seconds=120,
    )
    tenant = server.tenant()

    answers = [wrong(server, tenant, source=f"127.0.0.{n}").status_code for n in (2, 3, 4, 5)]
    legitimate = grant(server, tenant, source="127.0.0.1")

    assert answers == [400, 400, 400, 429]
    assert legitimate.status_code == 429
    assert legitimate.json()["limit"] == "signin_account_lockout"


def test_a_successful_sign_in_forgets_the_failures_of_that_address(
    start_server: StartServer,
) -> None:
    server = start_server(**GUARD)
    tenant = server.tenant()

    wrong(server, tenant)
    assert grant(server, tenant).status_code == 200
    after = [wrong(server, tenant).status_code for _ in range(2)]

    assert after == [400, 400]


def test_lockouts_and_refusals_are_audited_without_the_password(
    start_server: StartServer,
) -> None:
    server = start_server(**GUARD)
    tenant = server.tenant()
    for _ in range(2):
        wrong(server, tenant, source=ATTACKER)
    wait_out(wrong(server, tenant, source=ATTACKER))
    wrong(server, tenant, source=ATTACKER)
    for _ in range(3):
        grant(server, tenant, source=ATTACKER)

    [lockout] = audit_events(server, tenant, "signin.lockout")
    throttled = audit_events(server, tenant, "signin.throttled")
    refused = audit_events(server, tenant, "token.issue")

    assert lockout.outcome == "locked"
    assert lockout.operator_id == tenant.operator.id
    assert lockout.ip_address == ATTACKER
    assert lockout.detail["scope"] == "source"
    assert lockout.detail["seconds"] == 120
    assert {e.detail["limit"] for e in throttled} == {"signin_delay", "signin_lockout"}
    assert len(throttled) == 2, "a refusal repeated within the period is audited once"
    assert [e.detail["reason"] for e in refused] == ["wrong_credentials"] * 3
    stored = " ".join(str(vars(e)) for e in [lockout, *throttled, *refused])
    assert tenant.operator.password not in stored
    assert "not-the-password-at-all" not in stored
    assert tenant.operator.email not in stored


def test_the_guard_serves_the_web_sign_in_through_its_python_api(
    start_server: StartServer,
) -> None:
    server = start_server(**GUARD)
    tenant = server.tenant()
    guard = server.services.abuse.sign_in
    attempt = SignInAttempt(
        tenant.operator.email,
        Origin(ip_address="198.51.100.7", user_agent="browser"),
        channel="web",
        company_id=tenant.company_id,
        operator_id=tenant.operator.id,
    )

    outcomes = []
    for _ in range(2):
        guard.check(attempt)
        ok = guard.verify(attempt, None, "whatever")
        guard.record(attempt, ok)
        outcomes.append(ok)
    with pytest.raises(Throttled) as delayed:
        guard.check(attempt)

    assert outcomes == [False, False]
    assert delayed.value.limit == "signin_delay"
    assert delayed.value.headers["Retry-After"] == str(delayed.value.retry_after)


def test_the_web_sign_in_limit_per_ip_is_available_to_the_sign_in_page(
    start_server: StartServer,
) -> None:
    server = start_server(signin_requests_per_ip_per_minute=2)
    origin = Origin(ip_address="198.51.100.8")

    server.services.abuse.requests.check_sign_in(origin)
    server.services.abuse.requests.check_sign_in(origin)
    with pytest.raises(Throttled) as refused:
        server.services.abuse.requests.check_sign_in(origin)

    assert refused.value.limit == "signin_requests_per_ip"


def _without_seconds(body: dict) -> dict:
    """The answer without the seconds to wait, which differ by when it was given."""
    return {key: value for key, value in body.items() if key not in ("retry_after",)} | {
        "error_description": "".join(
            c for c in body.get("error_description", "") if not c.isdigit()
        )
    }


def test_token_limits_keep_counting_in_the_process_when_redis_is_unreachable(
    start_server: StartServer, limits_storage: str | None
) -> None:
    if limits_storage is None:
        pytest.skip("this test is about Redis")
    server = start_server(redis_url="redis://127.0.0.1:9/0", token_requests_per_ip_per_minute=2)
    tenant = server.tenant()

    statuses = [grant(server, tenant).status_code for _ in range(3)]

    assert statuses == [200, 200, 429]
