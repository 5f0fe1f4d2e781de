"""Token introspection (RFC 7662): a company's client sees its own company's tokens only."""

from datetime import UTC, datetime, timedelta

import jwt
from sqlalchemy import update

from erpauth.domain.operators import get_operator, set_active
from erpauth.storage.models import AccessToken
from tests.lifecycle import INTROSPECT_PATH, introspect, refresh, revoke, token_pair
from tests.support import LiveServer

INACTIVE = {"active": False}


def test_active_access_token_is_described_with_its_claims(live: LiveServer) -> None:
    tenant = live.tenant(token_expiry_hours=2)
    token = token_pair(live, tenant)["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})

    response = introspect(live, tenant, token)

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["active"] is True
    assert body["token_type"] == "Bearer"
    assert body["username"] == tenant.operator.email
    assert body["client_id"] == tenant.client_id
    assert body["company_id"] == str(tenant.company_id)
    for name in ("sub", "scope", "iss", "aud", "jti", "iat", "exp"):
        assert body[name] == claims[name], name


def test_active_refresh_token_is_described(live: LiveServer) -> None:
    tenant = live.tenant()
    token = token_pair(live, tenant)["refresh_token"]

    body = introspect(live, tenant, token, token_type_hint="refresh_token").json()

    assert body["active"] is True
    assert body["sub"] == str(tenant.operator.id)
    assert body["client_id"] == tenant.client_id
    assert body["scope"] == "api"
    assert body["exp"] > body["iat"]


def test_another_companys_tokens_are_inactive_to_this_client(live: LiveServer) -> None:
    ours, theirs = live.tenant(), live.tenant()
    pair = token_pair(live, ours)

    assert introspect(live, theirs, pair["access_token"]).json() == INACTIVE
    assert introspect(live, theirs, pair["refresh_token"]).json() == INACTIVE
    assert introspect(live, ours, pair["access_token"]).json()["active"] is True


def test_revoked_and_unknown_tokens_are_inactive(live: LiveServer) -> None:
    tenant = live.tenant()
    pair = token_pair(live, tenant)
    revoke(live, tenant, pair["refresh_token"])

    assert introspect(live, tenant, pair["access_token"]).json() == INACTIVE
    assert introspect(live, tenant, pair["refresh_token"]).json() == INACTIVE
    assert introspect(live, tenant, "not-a-token").json() == INACTIVE
    assert introspect(live, tenant, "a.b.c").json() == INACTIVE


def test_used_refresh_token_is_inactive(live: LiveServer) -> None:
    tenant = live.tenant()
    pair = token_pair(live, tenant)
    successor = refresh(live, tenant, pair["refresh_token"]).json()

    assert introspect(live, tenant, pair["refresh_token"]).json() == INACTIVE
    assert introspect(live, tenant, successor["refresh_token"]).json()["active"] is True


def test_expired_access_token_is_inactive(live: LiveServer) -> None:
    tenant = live.tenant()
    token = token_pair(live, tenant)["access_token"]
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    with live.services.database.session() as session:
        session.execute(
            update(AccessToken)
            .where(AccessToken.jti == jti)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )

    assert introspect(live, tenant, token).json() == INACTIVE


def test_tokens_of_a_deactivated_operator_are_inactive(live: LiveServer) -> None:
    tenant = live.tenant()
    pair = token_pair(live, tenant)
    with live.services.database.session() as session:
        set_active(session, get_operator(session, tenant.operator.email), False)

    assert introspect(live, tenant, pair["access_token"]).json() == INACTIVE
    assert introspect(live, tenant, pair["refresh_token"]).json() == INACTIVE


def test_tokens_are_inactive_while_the_license_has_api_disabled(live: LiveServer) -> None:
    from erpauth.domain.companies import get_company, set_api_enabled

    tenant = live.tenant()
    pair = token_pair(live, tenant)
    with live.services.database.session() as session:
        set_api_enabled(session, get_company(session, tenant.code), False)

    assert introspect(live, tenant, pair["access_token"]).json() == INACTIVE
    assert introspect(live, tenant, pair["refresh_token"]).json() == INACTIVE


def test_introspection_needs_client_authentication(live: LiveServer) -> None:
    tenant = live.tenant()
    token = token_pair(live, tenant)["access_token"]

    with live.client() as http:
        anonymous = http.post(INTROSPECT_PATH, data={"token": token})
        wrong = http.post(INTROSPECT_PATH, auth=(tenant.client_id, "nope"), data={"token": token})

    assert anonymous.status_code == wrong.status_code == 401
    assert anonymous.json()["error"] == wrong.json()["error"] == "invalid_client"
    assert "active" not in wrong.json()


def test_missing_token_parameter_is_invalid_request(live: LiveServer) -> None:
    tenant = live.tenant()

    with live.client() as http:
        response = http.post(
            INTROSPECT_PATH, auth=(tenant.client_id, tenant.primary_secret), data={"a": "b"}
        )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_introspection_path_matches_whatever_the_letter_case(live: LiveServer) -> None:
    tenant = live.tenant()
    token = token_pair(live, tenant)["access_token"]

    with live.client() as http:
        response = http.post(
            "/AUTHENTICATION/v1/authentication/Introspect",
            auth=(tenant.client_id, tenant.primary_secret),
            data={"token": token},
        )

    assert response.json()["active"] is True
