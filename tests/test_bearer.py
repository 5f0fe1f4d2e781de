"""Bearer-protected APIs (RFC 6750): who gets in, and that revocation takes effect at once."""

import base64
import json
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from erpauth.domain.companies import get_company, set_api_enabled
from erpauth.domain.operators import get_operator, set_active, set_api_permission
from erpauth.domain.tokens import revoke_access_token
from tests.support import ME_PATH, LiveServer


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_me_says_who_the_token_speaks_for(live: LiveServer) -> None:
    tenant = live.tenant(token_expiry_hours=1)
    token = live.access_token(tenant)

    body = live.me(token).json()

    assert body["operator"]["email"] == tenant.operator.email
    assert body["operator"]["id"] == str(tenant.operator.id)
    assert body["company"]["account_code"] == tenant.code
    assert body["client_id"] == tenant.client_id
    assert body["scope"] == "api"
    assert body["expires_at"] is not None


def test_answers_to_a_bearer_request_are_kept_by_no_cache(live: LiveServer) -> None:
    # The answer describes the operator behind the token: no cache may keep it (RFC 9111).
    tenant = live.tenant()
    token = live.access_token(tenant)

    response = live.me(token)

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"


def test_request_without_token_gets_a_bearer_challenge(live: LiveServer) -> None:
    with live.client() as http:
        response = http.get(ME_PATH)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="erpauth"'
    assert response.json()["error"] == "unauthorized"


def test_garbage_token_is_invalid_token(live: LiveServer) -> None:
    response = live.me("not-a-jwt")

    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert response.json()["error"] == "invalid_token"


def test_unsigned_token_with_alg_none_is_refused(live: LiveServer) -> None:
    tenant = live.tenant()
    claims = claims_of(live.access_token(tenant))
    forged = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."

    response = live.me(forged)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_token_signed_with_another_key_is_refused(live: LiveServer) -> None:
    tenant = live.tenant()
    token = live.access_token(tenant)
    header, claims = jwt.get_unverified_header(token), claims_of(token)
    stranger = ec.generate_private_key(ec.SECP256R1())

    forged = jwt.encode(claims, stranger, algorithm="ES256", headers={"kid": header["kid"]})

    assert live.me(forged).status_code == 401


def test_token_signed_hs256_with_the_public_key_is_refused(live: LiveServer) -> None:
    tenant = live.tenant()
    token = live.access_token(tenant)
    header, claims = jwt.get_unverified_header(token), claims_of(token)
    public_pem = live.services.keys.verification_key(header["kid"]).public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{b64({'alg': 'HS256', 'kid': header['kid']})}.{b64(claims)}".encode()
    import hashlib
    import hmac

    signature = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    forged = signing_input.decode() + "." + base64.urlsafe_b64encode(signature).decode().rstrip("=")

    assert live.me(forged).status_code == 401


def test_expired_token_is_refused_even_with_a_valid_signature(live: LiveServer) -> None:
    tenant = live.tenant()
    token = live.access_token(tenant)
    claims = claims_of(token) | {"exp": int(time.time()) - 3600}
    key = live.services.keys.signing_key()

    expired = jwt.encode(claims, key.private_key, algorithm="ES256", headers={"kid": key.kid})

    response = live.me(expired)
    assert response.status_code == 401
    assert "expired" in response.json()["error_description"]


def test_validly_signed_token_that_was_never_issued_is_refused(live: LiveServer) -> None:
    tenant = live.tenant()
    claims = claims_of(live.access_token(tenant)) | {"jti": "never-issued-by-this-server"}
    key = live.services.keys.signing_key()

    minted = jwt.encode(claims, key.private_key, algorithm="ES256", headers={"kid": key.kid})

    assert live.me(minted).status_code == 401


def test_revoked_token_is_refused_on_the_very_next_request(live: LiveServer) -> None:
    tenant = live.tenant()
    token = live.access_token(tenant)
    assert live.me(token).status_code == 200

    with live.services.database.session() as session:
        assert revoke_access_token(session, claims_of(token)["jti"], "test")

    response = live.me(token)
    assert response.status_code == 401
    assert "revoked" in response.json()["error_description"]


def test_token_stops_working_when_the_operator_is_deactivated(live: LiveServer) -> None:
    tenant = live.tenant()
    token = live.access_token(tenant)

    with live.services.database.session() as session:
        set_active(session, get_operator(session, tenant.operator.email), False)

    assert live.me(token).status_code == 401


def test_token_stays_dead_after_the_operator_is_reactivated(live: LiveServer) -> None:
    tenant = live.tenant()
    token = live.access_token(tenant)

    with live.services.database.session() as session:
        operator = get_operator(session, tenant.operator.email)
        set_active(session, operator, False)
        set_active(session, operator, True)

    assert live.me(token).status_code == 401
    assert live.password_grant(tenant).status_code == 200


def test_token_stops_working_when_api_permission_is_revoked(live: LiveServer) -> None:
    tenant = live.tenant()
    token = live.access_token(tenant)

    with live.services.database.session() as session:
        set_api_permission(session, get_operator(session, tenant.operator.email), False)

    response = live.me(token)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_token_stops_working_while_the_license_has_api_access_closed(live: LiveServer) -> None:
    tenant = live.tenant()
    token = live.access_token(tenant)

    with live.services.database.session() as session:
        set_api_enabled(session, get_company(session, tenant.code), False)
    closed = live.me(token)
    with live.services.database.session() as session:
        set_api_enabled(session, get_company(session, tenant.code), True)

    assert closed.status_code == 401
    assert "license" in closed.json()["error_description"]
    assert live.me(token).status_code == 200


def test_bearer_scheme_name_is_case_insensitive(live: LiveServer) -> None:
    tenant = live.tenant()
    token = live.access_token(tenant)

    with live.client() as http:
        response = http.get(ME_PATH, headers={"Authorization": f"bearer {token}"})

    assert response.status_code == 200
