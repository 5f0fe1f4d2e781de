"""The refresh grant's fast path on PostgreSQL (erpauth.oauth.refresh_fast_path).

It must be taken for the plain success, give the same answer, rows, audit event and log line
as the synchronous grant, fall back to that grant for everything else, and survive losing its
connection without a 500 or a half-written record.
"""

import logging
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, select, text, update

from erpauth.domain.audit import Origin
from erpauth.oauth import refresh_fast_path
from erpauth.oauth import refresh_grant as refresh_grant_module
from erpauth.oauth.client_auth import ClientCredentials
from erpauth.oauth.refresh_grant import refresh_token_grant
from erpauth.oauth.token_endpoint import token_response_body
from erpauth.security.secrets import sha256_hex
from erpauth.storage.models import Company, Operator, RefreshToken
from tests.fast_paths import (  # noqa: F401 - fresh_key_ring is an autouse fixture
    assert_issued_alike,
    backends_waiting,
    columns,
    fresh_key_ring,
    issued_count,
    locked_operator,
    postgres_only,
)
from tests.lifecycle import audit_events, refresh, revoke, token_pair
from tests.support import TOKEN_PATH, LiveServer, Tenant

USER_AGENT = "fast-path-test/1.0"


def _refresh(live: LiveServer, tenant: Tenant, token: str, **extra: str) -> httpx.Response:
    with live.client() as http:
        return http.post(
            TOKEN_PATH,
            auth=(tenant.client_id, tenant.primary_secret),
            headers={"User-Agent": USER_AGENT},
            data={"grant_type": "refresh_token", "refresh_token": token, **extra},
        )


def test_a_plain_refresh_on_postgresql_is_answered_by_the_fast_path(live: LiveServer) -> None:
    postgres_only(live)
    tenant = live.tenant()
    token = token_pair(live, tenant)["refresh_token"]
    before = live.services.fast_refreshes

    response = _refresh(live, tenant, token)

    assert response.status_code == 200, response.text
    assert live.services.fast_refreshes == before + 1
    assert live.me(response.json()["access_token"]).status_code == 200
    [event] = audit_events(live, tenant.company_id, "token.refresh")
    assert event.outcome == "success"


def test_sqlite_keeps_the_synchronous_grant(live: LiveServer) -> None:
    if live.settings.resolved_database_url().startswith("postgresql"):
        pytest.skip("SQLite only")
    tenant = live.tenant()

    response = refresh(live, tenant, token_pair(live, tenant)["refresh_token"])

    assert response.status_code == 200, response.text
    assert live.services.fast_refreshes == 0


def test_the_fast_path_answers_writes_and_logs_as_the_synchronous_grant(
    live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    postgres_only(live)
    tenant = live.tenant(token_expiry_hours=5)
    fast_token = token_pair(live, tenant)["refresh_token"]
    slow_token = token_pair(live, tenant)["refresh_token"]
    before = live.services.fast_refreshes

    with caplog.at_level(logging.INFO, logger="erpauth.security"):
        fast = _refresh(live, tenant, fast_token, scope="api").json()
        # The synchronous grant itself, as SQLite and every fallback run it.
        slow = token_response_body(
            refresh_token_grant(
                live.services,
                ClientCredentials(tenant.client_id, tenant.primary_secret, "client_secret_basic"),
                {"grant_type": "refresh_token", "refresh_token": slow_token, "scope": "api"},
                Origin(ip_address="127.0.0.1", user_agent=USER_AGENT),
            )
        )

    assert live.services.fast_refreshes == before + 1
    assert_issued_alike(live, tenant, caplog, "token.refresh", fast, slow)
    assert _used_rows(live, fast_token) == _used_rows(live, slow_token)


def test_refusals_fall_back_to_the_synchronous_grant_and_are_recorded_once(
    live: LiveServer,
) -> None:
    postgres_only(live)
    tenant = live.tenant()
    token = token_pair(live, tenant)["refresh_token"]
    with live.services.database.session() as session:
        session.execute(
            update(Operator).where(Operator.id == tenant.operator.id).values(is_active=False)
        )
    before = live.services.fast_refreshes

    with live.client() as http:
        wrong_secret = http.post(
            TOKEN_PATH,
            auth=(tenant.client_id, "not-the-secret"),
            data={"grant_type": "refresh_token", "refresh_token": token},
        )
    deactivated = refresh(live, tenant, token)
    unknown = refresh(live, tenant, "not-a-refresh-token")
    wider = refresh(live, tenant, token, scope="api admin")

    assert live.services.fast_refreshes == before
    assert wrong_secret.status_code == 401
    assert wrong_secret.json()["error"] == "invalid_client"
    assert deactivated.status_code == 400
    assert "deactivated" in deactivated.json()["error_description"]
    assert unknown.json()["error"] == "invalid_grant"
    assert wider.json()["error"] == "invalid_scope"
    reasons = [e.detail["reason"] for e in audit_events(live, tenant.company_id, "token.refresh")]
    assert reasons == ["invalid_client", "operator_inactive", "unknown_refresh_token"]
    assert _used_at(live, token) is None


def test_a_reused_token_falls_back_and_revokes_the_family(live: LiveServer) -> None:
    postgres_only(live)
    tenant = live.tenant()
    first = token_pair(live, tenant)
    second = _refresh(live, tenant, first["refresh_token"]).json()
    before = live.services.fast_refreshes

    replay = _refresh(live, tenant, first["refresh_token"])

    assert live.services.fast_refreshes == before
    assert replay.status_code == 400
    assert "already used" in replay.json()["error_description"]
    assert live.me(second["access_token"]).status_code == 401
    [reuse] = audit_events(live, tenant.company_id, "token.reuse")
    assert reuse.detail["concurrent"] is False


def test_two_refreshes_racing_past_the_read_give_one_success_and_revoke_the_family(
    live: LiveServer,
) -> None:
    """Both read the token unused; the row lock held here lets them reach the claim together."""
    postgres_only(live)
    tenant = live.tenant()
    presented = token_pair(live, tenant)["refresh_token"]
    before = live.services.fast_refreshes

    with _locked_refresh_token(live, presented) as lock, ThreadPoolExecutor(2) as pool:
        racing = [pool.submit(_refresh, live, tenant, presented) for _ in range(2)]
        backends_waiting(lock, "claimed AS (", count=2)
        lock.rollback()
        responses = [future.result(timeout=30) for future in racing]

    [winner] = [r for r in responses if r.status_code == 200]
    [loser] = [r for r in responses if r.status_code != 200]
    assert live.services.fast_refreshes == before + 1
    assert loser.status_code == 400
    assert "already used" in loser.json()["error_description"]
    # The loser's presentation was a reuse, so the winner's new tokens died with it.
    assert live.me(winner.json()["access_token"]).status_code == 401
    assert refresh(live, tenant, winner.json()["refresh_token"]).status_code == 400
    [reuse] = audit_events(live, tenant.company_id, "token.reuse")
    assert reuse.detail["concurrent"] is True
    assert reuse.detail["refresh_tokens_revoked"] == 2


def test_a_deactivation_committed_while_the_refresh_waits_refuses_it(live: LiveServer) -> None:
    """The change holds the operator's row; the refresh's write waits, then sees it."""
    postgres_only(live)
    tenant = live.tenant()
    presented = token_pair(live, tenant)["refresh_token"]
    before = live.services.fast_refreshes

    with locked_operator(live, tenant.operator.id) as held, ThreadPoolExecutor(1) as threads:
        pending: Future[httpx.Response] = threads.submit(_refresh, live, tenant, presented)
        backends_waiting(held, "claimed AS (", count=1)
        held.execute(
            update(Operator).where(Operator.id == tenant.operator.id).values(is_active=False)
        )
        held.commit()
        response = pending.result(timeout=30)

    assert live.services.fast_refreshes == before
    assert response.status_code == 400, response.text
    assert "deactivated" in response.json()["error_description"]
    assert _used_at(live, presented) is None
    assert issued_count(live, tenant) == (1, 1)
    [event] = audit_events(live, tenant.company_id, "token.refresh")
    assert event.detail["reason"] == "operator_inactive"


@pytest.mark.parametrize(
    ("lock", "waiting_on"),
    [("operator", "FOR SHARE OF op"), ("refresh_token", "claimed AS (")],
    ids=["waiting_for_the_operator", "waiting_for_the_token"],
)
def test_a_connection_killed_mid_refresh_answers_503_and_writes_nothing(
    live: LiveServer, lock: str, waiting_on: str
) -> None:
    postgres_only(live)
    tenant = live.tenant()
    pair = token_pair(live, tenant)
    presented = pair["refresh_token"]
    pool = live.services.database.async_autocommit.sync_engine.pool
    locking = locked_operator if lock == "operator" else _locked_refresh_token

    with locking(live, tenant.operator.id if lock == "operator" else presented) as held:
        with ThreadPoolExecutor(1) as threads:
            pending: Future[httpx.Response] = threads.submit(_refresh, live, tenant, presented)
            [pid] = backends_waiting(held, waiting_on, count=1)
            held.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            response = pending.result(timeout=30)
        held.rollback()

    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert response.headers["retry-after"]
    assert pool.checkedout() == 0
    # Nothing of the refresh was kept: the token is unused, nothing new was issued.
    assert _used_at(live, presented) is None
    assert issued_count(live, tenant) == (1, 1)
    assert audit_events(live, tenant.company_id, "token.refresh") == []
    # The pool replaced the dead connection; the same token now refreshes normally.
    before = live.services.fast_refreshes
    assert _refresh(live, tenant, presented).status_code == 200
    assert live.services.fast_refreshes == before + 1
    assert live.me(pair["access_token"]).status_code == 200


@contextmanager
def _locked_refresh_token(live: LiveServer, token: str) -> Iterator[Connection]:
    """Holds the refresh token's row locked, which stops a refresh at its claim."""
    with live.services.database.engine.connect() as connection:
        connection.execute(
            text("SELECT id FROM refresh_tokens WHERE token_hash = :hash FOR UPDATE"),
            {"hash": sha256_hex(token)},
        )
        try:
            yield connection
        finally:
            connection.rollback()


def _used_rows(live: LiveServer, token: str) -> dict[str, Any]:
    with live.services.database.session() as session:
        row = session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == sha256_hex(token))
        )
        assert row is not None and row.used_at is not None
        return {key: value for key, value in columns(row).items() if key != "used_at"}


def _used_at(live: LiveServer, token: str) -> Any:
    with live.services.database.session() as session:
        return session.scalar(
            select(RefreshToken.used_at).where(RefreshToken.token_hash == sha256_hex(token))
        )


# Each change makes the token one the synchronous grant refuses; the fast path must not grant it.
_SPOILED = {
    "expired": (RefreshToken, "expires_at", -1, "expired"),
    "revoked": (RefreshToken, "revoked_at", 0, "revoked"),
    "password changed": (Operator, "password_changed_at", 1, "password_changed"),
    "license closed": (Company, "api_enabled", None, "license_api_disabled"),
    "no API permission": (Operator, "api_permission", None, "no_api_permission"),
}


@pytest.mark.parametrize("case", _SPOILED)
def test_a_token_the_synchronous_grant_refuses_is_not_granted_by_the_fast_path(
    live: LiveServer, case: str
) -> None:
    postgres_only(live)
    tenant = live.tenant()
    token = token_pair(live, tenant)["refresh_token"]
    model, column, hours, reason = _SPOILED[case]
    value = False if hours is None else datetime.now(UTC) + timedelta(hours=hours)
    where = {
        RefreshToken: RefreshToken.token_hash == sha256_hex(token),
        Operator: Operator.id == tenant.operator.id,
        Company: Company.id == tenant.company_id,
    }[model]
    with live.services.database.session() as session:
        session.execute(update(model).where(where).values({column: value}))
    before = live.services.fast_refreshes

    refused = refresh(live, tenant, token)

    assert live.services.fast_refreshes == before
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "invalid_grant"
    [event] = audit_events(live, tenant.company_id, "token.refresh")
    assert event.detail["reason"] == reason


def test_another_companys_client_cannot_refresh_a_token_by_the_fast_path(live: LiveServer) -> None:
    postgres_only(live)
    owner, other = live.tenant(), live.tenant()
    token = token_pair(live, owner)["refresh_token"]
    before = live.services.fast_refreshes

    refused = refresh(live, other, token)

    assert live.services.fast_refreshes == before
    assert refused.json()["error"] == "invalid_grant"
    assert _used_at(live, token) is None


def test_a_revocation_waiting_for_a_rotation_also_revokes_the_token_it_issued(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client revokes its refresh token while a rotation of it has claimed it and not yet
    committed: the revocation waits for the claimed row, and must then also find the refresh
    token that rotation issued, which its first statement was too early to see."""
    postgres_only(live)
    tenant = live.tenant()
    presented = token_pair(live, tenant)["refresh_token"]
    # The synchronous grant, whose transaction stays open between its inserts and its commit.
    monkeypatch.setattr(refresh_fast_path, "_decide", lambda *args: None)
    issue = refresh_grant_module.issue_token_pair
    revocations: list[Future[httpx.Response]] = []

    with ThreadPoolExecutor(1) as threads, live.services.database.engine.connect() as watch:

        def revocation_waits_meanwhile(*args: Any, **kwargs: Any) -> Any:
            issued = issue(*args, **kwargs)
            revocations.append(threads.submit(revoke, live, tenant, presented))
            backends_waiting(watch, "UPDATE refresh_tokens", count=1)
            return issued

        monkeypatch.setattr(refresh_grant_module, "issue_token_pair", revocation_waits_meanwhile)
        rotated = _refresh(live, tenant, presented)
        [revocation] = revocations
        assert revocation.result(timeout=30).status_code == 200
    monkeypatch.undo()

    assert rotated.status_code == 200, rotated.text
    assert live.me(rotated.json()["access_token"]).status_code == 401
    assert refresh(live, tenant, rotated.json()["refresh_token"]).status_code == 400
