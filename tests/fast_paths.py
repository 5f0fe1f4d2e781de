"""What the tests of the grants' fast paths on PostgreSQL share.

Each fast path must answer, write and log as its synchronous grant does; these read back the
answers, rows and events in a form that two grants' results can be compared in.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jwt
import pytest
from sqlalchemy import Connection, select, text

from erpauth.security.secrets import sha256_hex
from erpauth.storage.models import AccessToken, RefreshToken
from tests.support import LiveServer, Tenant

# Columns that differ between any two issued tokens; every other column must match.
PER_TOKEN = {
    "jti",
    "token_hash",
    "hint",
    "id",
    "issued_at",
    "expires_at",
    "family_id",
    "refresh_family_id",
}


@pytest.fixture(autouse=True)
def fresh_key_ring(live: LiveServer) -> None:
    """The fast paths decline while signing would first reload the key ring (older than 30 s,
    as after slower tests of the session); their tests count the grants they answer."""
    live.services.keys.reload()


def postgres_only(live: LiveServer) -> None:
    if not live.settings.resolved_database_url().startswith("postgresql"):
        pytest.skip("the fast path is PostgreSQL's; SQLite keeps the synchronous grant")


def assert_issued_alike(
    live: LiveServer,
    tenant: Tenant,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    fast: dict[str, Any],
    slow: dict[str, Any],
) -> None:
    """The two answers, their tokens' rows, audit events of ``kind`` and log lines match, but
    for what differs between any two issued tokens."""
    assert response_shape(fast) == response_shape(slow)
    assert claims_shape(fast["access_token"]) == claims_shape(slow["access_token"])
    assert access_row(live, fast) == access_row(live, slow)
    assert refresh_row(live, fast) == refresh_row(live, slow)
    fast_event, slow_event = success_events(live, tenant, kind)
    assert fast_event == slow_event
    fast_line, slow_line = [
        record.fields
        for record in caplog.records
        if record.getMessage() == f"{kind} success"
        and record.fields["company_id"] == str(tenant.company_id)
    ]
    assert without_ids(fast_line) == without_ids(slow_line)


def response_shape(body: dict[str, Any]) -> dict[str, Any]:
    return {
        key: (value if key in ("token_type", "expires_in", "scope") else type(value))
        for key, value in body.items()
    }


def claims_shape(token: str) -> dict[str, Any]:
    claims = jwt.decode(token, options={"verify_signature": False})
    header = jwt.get_unverified_header(token)
    return {
        "header": header,
        "keys": sorted(claims),
        "lifetime": claims["exp"] - claims["iat"],
        "same": {
            key: claims[key]
            for key in ("iss", "sub", "aud", "client_id", "company_id", "email", "scope")
        },
    }


def access_row(live: LiveServer, body: dict[str, Any]) -> dict[str, Any]:
    jti = jwt.decode(body["access_token"], options={"verify_signature": False})["jti"]
    with live.services.database.session() as session:
        row = session.get(AccessToken, jti)
        assert row is not None
        assert row.token_hash == sha256_hex(body["access_token"])
        values = columns(row)
    values["lifetime"] = row.expires_at - row.issued_at
    return values


def refresh_row(live: LiveServer, body: dict[str, Any]) -> dict[str, Any]:
    with live.services.database.session() as session:
        row = session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == sha256_hex(body["refresh_token"]))
        )
        assert row is not None
        values = columns(row)
    values["lifetime"] = row.expires_at - row.issued_at
    return values


def columns(row: Any) -> dict[str, Any]:
    return {
        column.key: getattr(row, column.key)
        for column in row.__table__.columns
        if column.key not in PER_TOKEN
    }


def success_events(live: LiveServer, tenant: Tenant, kind: str) -> list[dict[str, Any]]:
    """The tenant's two events of this kind, with the keys of their stored JSON detail."""
    with live.services.database.engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT kind, outcome, company_id, actor_id, operator_id, client_id, ip_address,"
                " user_agent, detail::text AS detail FROM audit_events"
                " WHERE company_id = :company AND kind = :kind ORDER BY id"
            ),
            {"company": tenant.company_id, "kind": kind},
        ).mappings()
        events = [dict(row) for row in rows]
    assert len(events) == 2
    for event in events:
        # The same keys in the same order; the values name each refresh's own tokens.
        detail = event.pop("detail")
        event["detail_keys"] = [part.split(":")[0] for part in detail.strip("{}").split(", ")]
    return events


def without_ids(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if key not in PER_TOKEN | {"used_id"}}


@contextmanager
def locked_operator(live: LiveServer, operator_id: Any) -> Iterator[Connection]:
    """Holds the operator's row locked, which stops a refresh at its share-locking read."""
    with live.services.database.engine.connect() as connection:
        connection.execute(
            text("SELECT id FROM operators WHERE id = :id FOR UPDATE"), {"id": operator_id}
        )
        try:
            yield connection
        finally:
            connection.rollback()


def backends_waiting(connection: Connection, statement: str, *, count: int) -> list[int]:
    """The process ids of ``count`` backends waiting for a lock in ``statement``."""
    deadline = time.monotonic() + 10
    while True:
        # Within a transaction, pg_stat_activity is read once and kept: read it afresh.
        connection.execute(text("SELECT pg_stat_clear_snapshot()"))
        pids = list(
            connection.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND position(:statement IN query) > 0"
                ),
                {"statement": statement},
            ).scalars()
        )
        if len(pids) >= count or time.monotonic() > deadline:
            assert len(pids) == count, f"{len(pids)} backends waiting in {statement!r}"
            return pids
        time.sleep(0.02)


def issued_count(live: LiveServer, tenant: Tenant) -> tuple[int, int]:
    """How many access tokens and refresh tokens the tenant's operator holds."""
    with live.services.database.session() as session:
        access = session.scalars(
            select(AccessToken.jti).where(AccessToken.operator_id == tenant.operator.id)
        ).all()
        refresh_tokens = session.scalars(
            select(RefreshToken.id).where(RefreshToken.operator_id == tenant.operator.id)
        ).all()
    return len(access), len(refresh_tokens)
