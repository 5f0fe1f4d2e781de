"""Refresh tokens (RFC 6749 §6): rotation, reuse detection, client binding, standing checks."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial

import jwt
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from erpauth.domain.companies import get_company, set_api_enabled
from erpauth.domain.operators import get_operator, set_active, set_api_permission, set_password
from erpauth.domain.refresh_tokens import find_for_refresh
from erpauth.security.secrets import sha256_hex
from erpauth.storage.models import Operator, RefreshToken
from tests.lifecycle import audit_events, race, refresh, token_pair
from tests.support import TOKEN_PATH, LiveServer, Tenant

RACE_ROUNDS = 12


def test_password_grant_also_returns_an_opaque_refresh_token(live: LiveServer) -> None:
    tenant = live.tenant()

    response = live.password_grant(tenant)

    body = response.json()
    assert response.headers["cache-control"] == "no-store"
    assert len(body["refresh_token"]) >= 64
    assert body["refresh_token"].count(".") == 0  # opaque, not a JWT
    assert body["refresh_token"] != body["access_token"]


def test_refresh_token_is_stored_only_as_its_sha256_digest(live: LiveServer) -> None:
    tenant = live.tenant()
    token = token_pair(live, tenant)["refresh_token"]

    with live.services.database.session() as session:
        rows = session.scalars(
            select(RefreshToken).where(RefreshToken.operator_id == tenant.operator.id)
        ).all()
        stored = [str(getattr(row, c.key)) for row in rows for c in RefreshToken.__table__.columns]

    assert len(rows) == 1
    assert rows[0].token_hash == sha256_hex(token)
    assert all(token not in value for value in stored)


def test_refresh_rotates_both_tokens_within_one_family(live: LiveServer) -> None:
    tenant = live.tenant(token_expiry_hours=3)
    first = token_pair(live, tenant)

    response = refresh(live, tenant, first["refresh_token"])

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    second = response.json()
    assert second["token_type"] == "Bearer"
    assert second["expires_in"] == 3 * 3600
    assert second["scope"] == "api"
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert live.me(second["access_token"]).status_code == 200
    with live.services.database.session() as session:
        families = set(
            session.scalars(
                select(RefreshToken.family_id).where(RefreshToken.operator_id == tenant.operator.id)
            )
        )
    assert len(families) == 1


def test_each_refresh_token_works_once_and_its_successor_works_next(live: LiveServer) -> None:
    tenant = live.tenant()
    current = token_pair(live, tenant)["refresh_token"]

    for _ in range(3):
        response = refresh(live, tenant, current)
        assert response.status_code == 200, response.text
        current = response.json()["refresh_token"]


def test_refreshed_access_token_never_expires_when_company_expiry_is_zero(
    live: LiveServer,
) -> None:
    tenant = live.tenant(token_expiry_hours=0)

    body = refresh(live, tenant, token_pair(live, tenant)["refresh_token"]).json()

    assert "expires_in" not in body
    assert "exp" not in jwt.decode(body["access_token"], options={"verify_signature": False})


def test_reusing_a_used_refresh_token_revokes_the_whole_family(live: LiveServer) -> None:
    tenant = live.tenant()
    first = token_pair(live, tenant)
    second = refresh(live, tenant, first["refresh_token"]).json()
    unrelated = token_pair(live, tenant)

    replay = refresh(live, tenant, first["refresh_token"])

    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert "already used" in replay.json()["error_description"]
    assert live.me(first["access_token"]).status_code == 401
    assert live.me(second["access_token"]).status_code == 401
    assert refresh(live, tenant, second["refresh_token"]).json()["error"] == "invalid_grant"
    # Another sign-in of the same operator is a different family and keeps working.
    assert live.me(unrelated["access_token"]).status_code == 200
    assert refresh(live, tenant, unrelated["refresh_token"]).status_code == 200


def test_reuse_detection_is_recorded_in_the_audit_trail(live: LiveServer) -> None:
    tenant = live.tenant()
    first = token_pair(live, tenant)
    refresh(live, tenant, first["refresh_token"])

    refresh(live, tenant, first["refresh_token"])

    [event] = audit_events(live, tenant.company_id, "token.reuse")
    assert event.outcome == "family_revoked"
    assert event.operator_id == tenant.operator.id
    assert event.detail["refresh_tokens_revoked"] == 2  # the used one and its successor
    assert event.detail["access_tokens_revoked"] == 2
    assert first["refresh_token"] not in str(event.detail)
    [success] = audit_events(live, tenant.company_id, "token.refresh")
    assert success.outcome == "success"


def test_concurrent_refreshes_with_the_same_token_let_at_most_one_succeed(
    live: LiveServer,
) -> None:
    tenant = live.tenant()

    for _ in range(RACE_ROUNDS):
        presented = token_pair(live, tenant)["refresh_token"]
        responses = race([partial(refresh, live, tenant, presented)] * 2)

        succeeded = [r for r in responses if r.status_code == 200]
        failed = [r for r in responses if r.status_code != 200]
        assert len(succeeded) <= 1
        assert all(r.status_code == 400 and r.json()["error"] == "invalid_grant" for r in failed)
        if succeeded and failed:
            # The loser's presentation was a reuse, so the winner's new tokens died with it.
            winner = succeeded[0].json()
            assert refresh(live, tenant, winner["refresh_token"]).status_code == 400
            assert live.me(winner["access_token"]).status_code == 401


def test_refresh_token_of_another_client_is_invalid_grant(live: LiveServer) -> None:
    ours, theirs = live.tenant(), live.tenant()
    token = token_pair(live, ours)["refresh_token"]

    response = refresh(live, theirs, token)

    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": "the refresh token is not valid",
    }
    # Refused, not consumed: the rightful client can still use it.
    assert refresh(live, ours, token).status_code == 200


def test_refresh_with_a_wrong_client_secret_is_invalid_client(live: LiveServer) -> None:
    tenant = live.tenant()
    token = token_pair(live, tenant)["refresh_token"]

    with live.client() as http:
        response = http.post(
            TOKEN_PATH,
            auth=(tenant.client_id, "wrong-secret"),
            data={"grant_type": "refresh_token", "refresh_token": token},
        )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert refresh(live, tenant, token).status_code == 200


def test_wrong_client_secret_with_a_valid_refresh_token_is_recorded_for_that_company(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    token = token_pair(live, tenant)["refresh_token"]

    with live.client() as http:
        response = http.post(
            TOKEN_PATH,
            data={
                "grant_type": "refresh_token",
                "refresh_token": token,
                "client_id": tenant.client_id,
                "client_secret": "a-guessed-secret",
            },
        )

    assert response.status_code == 401
    assert "WWW-Authenticate" not in response.headers  # the secret came in the body
    [event] = audit_events(live, tenant.company_id, "token.refresh")
    assert (event.outcome, event.detail["reason"]) == ("refused", "invalid_client")
    assert event.detail["attempted_client_id"] == tenant.client_id


def test_refresh_with_client_credentials_in_the_body(live: LiveServer) -> None:
    tenant = live.tenant()
    token = token_pair(live, tenant)["refresh_token"]

    with live.client() as http:
        response = http.post(
            TOKEN_PATH,
            data={
                "grant_type": "refresh_token",
                "refresh_token": token,
                "client_id": tenant.client_id,
                "client_secret": tenant.secondary_secret,
            },
        )

    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"grant_type": "refresh_token"}, "invalid_request"),
        ({"grant_type": "refresh_token", "refresh_token": "not-a-token"}, "invalid_grant"),
        ({"grant_type": "refresh_token", "refresh_token": "x" * 5000}, "invalid_grant"),
    ],
)
def test_missing_or_unknown_refresh_token_gets_the_rfc_error(
    live: LiveServer, form: dict[str, str], error: str
) -> None:
    tenant = live.tenant()

    with live.client() as http:
        response = http.post(TOKEN_PATH, auth=(tenant.client_id, tenant.primary_secret), data=form)

    assert response.status_code == 400
    assert response.json()["error"] == error


def test_refresh_keeps_the_granted_scope_and_refuses_an_unknown_one(live: LiveServer) -> None:
    tenant = live.tenant()
    token = token_pair(live, tenant)["refresh_token"]

    unknown = refresh(live, tenant, token, scope="api admin")
    same = refresh(live, tenant, token, scope="api")

    assert unknown.status_code == 400
    assert unknown.json()["error"] == "invalid_scope"
    assert same.status_code == 200
    assert same.json()["scope"] == "api"


def test_expired_refresh_token_is_invalid_grant(live: LiveServer) -> None:
    tenant = live.tenant()
    token = token_pair(live, tenant)["refresh_token"]
    with live.services.database.session() as session:
        session.execute(
            update(RefreshToken)
            .where(RefreshToken.token_hash == sha256_hex(token))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )

    response = refresh(live, tenant, token)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert "expired" in response.json()["error_description"]


def test_refresh_token_lifetime_follows_the_setting(live: LiveServer) -> None:
    tenant = live.tenant()
    before = datetime.now(UTC)
    token = token_pair(live, tenant)["refresh_token"]

    with live.services.database.session() as session:
        row = session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == sha256_hex(token))
        )

    lifetime = timedelta(hours=live.settings.refresh_token_ttl_hours)
    assert before + lifetime <= row.expires_at <= datetime.now(UTC) + lifetime


def _deactivate_in_place(session, operator: Operator) -> None:
    operator.is_active = False


def _remove_permission_in_place(session, operator: Operator) -> None:
    operator.api_permission = False


def _change_password_in_place(session, operator: Operator) -> None:
    operator.password_changed_at = datetime.now(UTC)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (_deactivate_in_place, "deactivated"),
        (_remove_permission_in_place, "API permission"),
        (_change_password_in_place, "password has changed"),
    ],
    ids=["operator_deactivated", "api_permission_removed", "password_changed"],
)
def test_refresh_refused_whenever_a_password_grant_would_be(
    live: LiveServer, change: Callable, words: str
) -> None:
    # The operator row changes without the domain functions, so no token is revoked: the
    # refresh grant itself must notice.
    tenant = live.tenant()
    token = token_pair(live, tenant)["refresh_token"]
    with live.services.database.session() as session:
        change(session, session.get(Operator, tenant.operator.id))

    response = refresh(live, tenant, token)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert words in response.json()["error_description"]


def test_refresh_refused_while_the_license_has_api_disabled(live: LiveServer) -> None:
    tenant = live.tenant()
    token = token_pair(live, tenant)["refresh_token"]
    _set_license(live, tenant, False)

    closed = refresh(live, tenant, token)
    _set_license(live, tenant, True)
    reopened = refresh(live, tenant, token)

    assert closed.status_code == 400
    assert closed.json()["error_description"] == (
        "API access is not enabled in this company's license"
    )
    assert reopened.status_code == 200


@pytest.mark.parametrize(
    "change",
    [
        lambda s, o, live: set_active(s, o, False),
        lambda s, o, live: set_api_permission(s, o, False),
        lambda s, o, live: set_password(s, live.services.hasher, o, "An0ther-l0ng-passw0rd!"),
    ],
    ids=["deactivated", "api_permission_revoked", "password_changed"],
)
def test_operator_changes_revoke_refresh_and_access_tokens_for_good(
    live: LiveServer, change: Callable
) -> None:
    tenant = live.tenant()
    pair = token_pair(live, tenant)
    with live.services.database.session() as session:
        change(session, get_operator(session, tenant.operator.email), live)

    assert live.me(pair["access_token"]).status_code == 401
    with live.services.database.session() as session:
        operator = get_operator(session, tenant.operator.email)
        operator.is_active = True
        operator.api_permission = True
        operator.password_changed_at = datetime.now(UTC) - timedelta(days=1)
    # Even with the operator restored, the old refresh token stays revoked.
    response = refresh(live, tenant, pair["refresh_token"])
    assert response.status_code == 400
    assert "revoked" in response.json()["error_description"]


def _set_license(live: LiveServer, tenant: Tenant, enabled: bool) -> None:
    with live.services.database.session() as session:
        set_api_enabled(session, get_company(session, tenant.code), enabled)


def test_a_refresh_in_flight_holds_off_operator_changes_but_not_other_refreshes(
    live: LiveServer,
) -> None:
    """The refresh's read share-locks the operator until its commit (PostgreSQL row locks).

    A password change, deactivation or loss of API permission updates the operator row, so it
    waits for the refresh to commit and then revokes what the refresh issued; another refresh
    of the same operator takes the same share lock and goes ahead.
    """
    if not live.settings.resolved_database_url().startswith("postgresql"):
        pytest.skip("SQLite takes no row locks: it serialises writers instead")
    tenant = live.tenant()
    first, second = token_pair(live, tenant), token_pair(live, tenant)
    database = live.services.database

    with database.session() as refreshing:
        assert find_for_refresh(refreshing, tenant.client_id, first["refresh_token"])

        with database.session() as other_refresh:
            _fail_fast_on_locks(other_refresh)
            found = find_for_refresh(other_refresh, tenant.client_id, second["refresh_token"])
            assert found is not None and found.operator.id == tenant.operator.id

        with pytest.raises(OperationalError, match="lock timeout"), database.session() as change:
            _fail_fast_on_locks(change)
            change.execute(
                update(Operator)
                .where(Operator.id == tenant.operator.id)
                .values(password_changed_at=datetime.now(UTC))
            )


def _fail_fast_on_locks(session: Session) -> None:
    session.execute(text("SET LOCAL lock_timeout = '300ms'"))
