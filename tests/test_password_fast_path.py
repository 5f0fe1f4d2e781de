"""The password grant's fast path on PostgreSQL (erpauth.oauth.password_fast_path).

It must be taken for the plain success and give the same answer, rows, audit event and log
line as the synchronous grant; hand everything else to that grant without checking or
counting a password twice; see a change that commits while it waits; and survive losing its
connection without a 500 or a half-written record.
"""

import logging
from concurrent.futures import Future, ThreadPoolExecutor

import argon2
import httpx
import pytest
from sqlalchemy import event, select, text, update

from erpauth.domain.audit import Origin
from erpauth.oauth.client_auth import ClientCredentials
from erpauth.oauth.errors import InvalidClient
from erpauth.oauth.password_grant import password_grant
from erpauth.oauth.token_endpoint import token_response_body
from erpauth.storage.models import AuditEvent, Company, Operator
from tests.fast_paths import (  # noqa: F401 - fresh_key_ring is an autouse fixture
    assert_issued_alike,
    backends_waiting,
    fresh_key_ring,
    issued_count,
    locked_operator,
    postgres_only,
)
from tests.lifecycle import audit_events
from tests.support import TOKEN_PATH, LiveServer, Tenant

USER_AGENT = "fast-path-test/1.0"


def _form(tenant: Tenant, password: str | None = None) -> dict[str, str]:
    return {
        "grant_type": "password",
        "username": tenant.operator.email,
        "password": password or tenant.operator.password,
        "scope": "api",
    }


def _grant(
    live: LiveServer, tenant: Tenant, *, password: str | None = None, secret: str | None = None
) -> httpx.Response:
    with live.client() as http:
        return http.post(
            TOKEN_PATH,
            auth=(tenant.client_id, secret or tenant.primary_secret),
            headers={"User-Agent": USER_AGENT},
            data=_form(tenant, password),
        )


def test_a_plain_password_grant_on_postgresql_is_answered_by_the_fast_path(
    live: LiveServer,
) -> None:
    postgres_only(live)
    tenant = live.tenant()
    before = live.services.fast_password_grants

    response = _grant(live, tenant)

    assert response.status_code == 200, response.text
    assert live.services.fast_password_grants == before + 1
    assert live.me(response.json()["access_token"]).status_code == 200
    [event] = audit_events(live, tenant.company_id, "token.issue")
    assert event.outcome == "success"


def test_sqlite_keeps_the_synchronous_grant(live: LiveServer) -> None:
    if live.settings.resolved_database_url().startswith("postgresql"):
        pytest.skip("SQLite only")
    tenant = live.tenant()

    assert _grant(live, tenant).status_code == 200
    assert live.services.fast_password_grants == 0


def test_the_fast_path_answers_writes_and_logs_as_the_synchronous_grant(
    live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    postgres_only(live)
    tenant = live.tenant(token_expiry_hours=5)
    before = live.services.fast_password_grants

    with caplog.at_level(logging.INFO, logger="erpauth.security"):
        fast = _grant(live, tenant).json()
        # The synchronous grant itself, as SQLite and every fallback run it.
        slow = token_response_body(
            password_grant(
                live.services,
                ClientCredentials(tenant.client_id, tenant.primary_secret, "client_secret_basic"),
                _form(tenant),
                Origin(ip_address="127.0.0.1", user_agent=USER_AGENT),
            )
        )

    assert live.services.fast_password_grants == before + 1
    assert_issued_alike(live, tenant, caplog, "token.issue", fast, slow)


def test_refusals_fall_back_to_the_synchronous_grant_and_are_recorded_once(
    live: LiveServer,
) -> None:
    postgres_only(live)
    tenant = live.tenant()
    before = live.services.fast_password_grants

    wrong_secret = _grant(live, tenant, secret="not-the-secret")
    wrong_password = _grant(live, tenant, password="not-the-password")
    with live.services.database.session() as session:
        session.execute(
            update(Operator).where(Operator.id == tenant.operator.id).values(api_permission=False)
        )
    no_permission = _grant(live, tenant)
    with live.services.database.session() as session:
        session.execute(
            update(Company).where(Company.id == tenant.company_id).values(api_enabled=False)
        )
    license_closed = _grant(live, tenant)

    assert live.services.fast_password_grants == before
    assert wrong_secret.status_code == 401
    assert wrong_secret.json()["error"] == "invalid_client"
    assert wrong_password.status_code == 400
    assert wrong_password.json()["error"] == "invalid_grant"
    assert no_permission.status_code == 400
    assert "API permission" in no_permission.json()["error_description"]
    assert license_closed.status_code == 400
    assert "license" in license_closed.json()["error_description"]
    reasons = [e.detail["reason"] for e in audit_events(live, tenant.company_id, "token.issue")]
    assert reasons == [
        "invalid_client",
        "wrong_credentials",
        "no_api_permission",
        "license_api_disabled",
    ]
    assert issued_count(live, tenant) == (0, 0)


def test_each_wrong_password_is_counted_once(live: LiveServer) -> None:
    """The counters are read on the hashing thread and written on the fallback: once each."""
    tenant = live.tenant()
    before_delay = live.settings.signin_failures_before_delay

    answers = [_grant(live, tenant, password="wrong") for _ in range(before_delay)]
    delayed = _grant(live, tenant, password="wrong")

    assert [answer.status_code for answer in answers] == [400] * before_delay
    assert delayed.status_code == 429, delayed.text
    assert int(delayed.headers["retry-after"]) >= 1
    [throttled] = audit_events(live, tenant.company_id, "signin.throttled")
    assert throttled.detail["limit"] == "signin_delay"
    wrong = [e for e in audit_events(live, tenant.company_id, "token.issue")]
    assert [e.detail["reason"] for e in wrong] == ["wrong_credentials"] * before_delay


def test_a_hash_of_older_parameters_is_upgraded_by_the_synchronous_half(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    weaker = argon2.PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
    with live.services.database.session() as session:
        session.execute(
            update(Operator)
            .where(Operator.id == tenant.operator.id)
            .values(password_hash=weaker.hash(tenant.operator.password))
        )
    before = live.services.fast_password_grants

    response = _grant(live, tenant)

    assert response.status_code == 200, response.text
    assert live.services.fast_password_grants == before
    with live.services.database.session() as session:
        stored = session.scalar(
            select(Operator.password_hash).where(Operator.id == tenant.operator.id)
        )
    assert stored is not None and not live.services.hasher.needs_rehash(stored)
    assert _grant(live, tenant).status_code == 200
    assert live.services.fast_password_grants == before + (1 if _on_postgres(live) else 0)


def test_a_password_change_committed_while_the_grant_waits_refuses_it(live: LiveServer) -> None:
    """The change holds the operator's row; the grant's statement waits, then sees it."""
    postgres_only(live)
    tenant = live.tenant()
    replacement = live.services.hasher.hash("a-new-password-0123")

    with locked_operator(live, tenant.operator.id) as held, ThreadPoolExecutor(1) as threads:
        pending: Future[httpx.Response] = threads.submit(_grant, live, tenant)
        backends_waiting(held, "WITH standing AS", count=1)
        held.execute(
            update(Operator)
            .where(Operator.id == tenant.operator.id)
            .values(password_hash=replacement)
        )
        held.commit()
        response = pending.result(timeout=30)

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_grant"
    assert issued_count(live, tenant) == (0, 0)
    [refused] = audit_events(live, tenant.company_id, "token.issue")
    assert refused.detail["reason"] == "wrong_credentials"


def test_a_connection_killed_mid_grant_answers_503_and_writes_nothing(live: LiveServer) -> None:
    postgres_only(live)
    tenant = live.tenant()
    pool = live.services.database.async_autocommit.sync_engine.pool

    with locked_operator(live, tenant.operator.id) as held, ThreadPoolExecutor(1) as threads:
        pending: Future[httpx.Response] = threads.submit(_grant, live, tenant)
        [pid] = backends_waiting(held, "WITH standing AS", count=1)
        held.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        response = pending.result(timeout=30)
        held.rollback()

    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert response.headers["retry-after"]
    assert pool.checkedout() == 0
    assert issued_count(live, tenant) == (0, 0)
    assert audit_events(live, tenant.company_id, "token.issue") == []
    # The pool replaced the dead connection; the same grant now succeeds on the fast path.
    before = live.services.fast_password_grants
    assert _grant(live, tenant).status_code == 200
    assert live.services.fast_password_grants == before + 1


def _on_postgres(live: LiveServer) -> bool:
    return live.settings.resolved_database_url().startswith("postgresql")


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
@pytest.mark.parametrize("client", ["wrong_secret", "unknown_client"])
def test_a_wrong_client_is_refused_as_the_synchronous_grant_refuses_it_reading_it_once(
    live: LiveServer, caplog: pytest.LogCaptureFixture, client: str, method: str
) -> None:
    """On PostgreSQL the fast path refuses it itself; on SQLite the synchronous grant does.
    Either way the answer, the audit event and the log line are the synchronous grant's, and
    the client is read once: by the fast path's read alone, or by the grant's."""
    tenant = live.tenant()
    client_id = tenant.client_id if client == "wrong_secret" else f"unknown-{tenant.code}"
    credentials = ClientCredentials(client_id, "not-the-secret", method)
    origin = Origin(ip_address="127.0.0.1", user_agent=USER_AGENT)
    form = _form(tenant)  # the right password: no password is checked or counted either way
    postgres = live.settings.resolved_database_url().startswith("postgresql")
    before = live.services.fast_password_grants

    client_reads: list[str] = []

    def count_client_reads(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "FROM api_clients" in statement:
            client_reads.append(statement)

    with caplog.at_level(logging.INFO, logger="erpauth.security"):
        event.listen(live.services.database.engine, "before_cursor_execute", count_client_reads)
        try:
            with live.client() as http:
                if method == "client_secret_basic":
                    answer = http.post(
                        TOKEN_PATH,
                        auth=(client_id, credentials.client_secret),
                        headers={"User-Agent": USER_AGENT},
                        data=form,
                    )
                else:
                    answer = http.post(
                        TOKEN_PATH,
                        headers={"User-Agent": USER_AGENT},
                        data={**form, "client_id": client_id, "client_secret": "not-the-secret"},
                    )
        finally:
            event.remove(live.services.database.engine, "before_cursor_execute", count_client_reads)
        # The synchronous grant itself, as SQLite and every fallback run it.
        with pytest.raises(InvalidClient) as slow:
            password_grant(live.services, credentials, form, origin)

    assert (answer.status_code, answer.json()) == (slow.value.status_code, slow.value.body())
    assert answer.headers.get("WWW-Authenticate") == slow.value.headers.get("WWW-Authenticate")
    assert ("WWW-Authenticate" in answer.headers) == (method == "client_secret_basic")
    # On PostgreSQL the one read was the fast path's, on its own connection.
    assert len(client_reads) == (0 if postgres else 1), client_reads
    assert live.services.fast_password_grants == before

    fast_event, slow_event = refusal_events(live, client_id)
    assert fast_event == slow_event
    assert fast_event["company_id"] == (tenant.company_id if client == "wrong_secret" else None)
    assert fast_event["detail"] == {"reason": "invalid_client", "attempted_client_id": client_id}
    fast_line, slow_line = [
        record.fields
        for record in caplog.records
        if record.getMessage() == "token.issue refused"
        and record.fields.get("attempted_client_id") == client_id
    ]
    assert fast_line == slow_line


def refusal_events(live: LiveServer, client_id: str) -> list[dict[str, object]]:
    """The refused token.issue events that name this client ID, without id and time."""
    with live.services.database.session() as session:
        events = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.kind == "token.issue", AuditEvent.outcome == "refused")
            .order_by(AuditEvent.id.desc())
            .limit(200)
        ).all()
        return [
            {
                column.key: getattr(row, column.key)
                for column in row.__table__.columns
                if column.key not in ("id", "occurred_at")
            }
            for row in reversed(events)
            if row.detail.get("attempted_client_id") == client_id
        ]
