"""The token endpoint: RFC 6749 password grant with either style of client authentication."""

import jwt
import pytest

from tests.support import TOKEN_PATH, LiveServer


def grant_form(operator) -> dict[str, str]:
    return {"grant_type": "password", "username": operator.email, "password": operator.password}


def test_password_grant_with_basic_client_auth_issues_a_bearer_token(live: LiveServer) -> None:
    tenant = live.tenant(token_expiry_hours=24)

    response = live.password_grant(tenant)

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 24 * 3600
    assert body["scope"] == "api"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    assert live.me(body["access_token"]).status_code == 200


def test_password_grant_with_client_credentials_in_the_body(live: LiveServer) -> None:
    tenant = live.tenant()
    form = grant_form(tenant.operator) | {
        "client_id": tenant.client_id,
        "client_secret": tenant.primary_secret,
    }

    with live.client() as http:
        response = http.post(TOKEN_PATH, data=form)

    assert response.status_code == 200, response.text
    assert live.me(response.json()["access_token"]).status_code == 200


def test_basic_credentials_are_form_urlencoded_before_base64(live: LiveServer) -> None:
    # RFC 6749 §2.3.1: a client may percent-encode id and secret; '-' and '_' stay valid either way.
    tenant = live.tenant()
    encoded_id = tenant.client_id.replace("-", "%2D")

    with live.client() as http:
        response = http.post(
            TOKEN_PATH, auth=(encoded_id, tenant.primary_secret), data=grant_form(tenant.operator)
        )

    assert response.status_code == 200, response.text


def test_token_path_matches_whatever_the_letter_case(live: LiveServer) -> None:
    tenant = live.tenant()

    with live.client() as http:
        response = http.post(
            "/Authentication/V1/Authentication/Token",
            auth=(tenant.client_id, tenant.primary_secret),
            data=grant_form(tenant.operator),
        )

    assert response.status_code == 200, response.text


def test_secondary_secret_authenticates_the_client_too(live: LiveServer) -> None:
    tenant = live.tenant()

    response = live.password_grant(tenant, secret=tenant.secondary_secret)

    assert response.status_code == 200


def test_credentials_in_header_and_body_at_once_are_an_invalid_request(live: LiveServer) -> None:
    tenant = live.tenant()
    form = grant_form(tenant.operator) | {"client_secret": tenant.primary_secret}

    with live.client() as http:
        response = http.post(TOKEN_PATH, auth=(tenant.client_id, tenant.primary_secret), data=form)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_wrong_secret_over_basic_is_invalid_client_with_a_basic_challenge(live: LiveServer) -> None:
    tenant = live.tenant()

    response = live.password_grant(tenant, secret="not-the-secret")

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic ")


def test_wrong_secret_in_the_body_is_invalid_client(live: LiveServer) -> None:
    tenant = live.tenant()
    form = grant_form(tenant.operator) | {"client_id": tenant.client_id, "client_secret": "nope"}

    with live.client() as http:
        response = http.post(TOKEN_PATH, data=form)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert "www-authenticate" not in response.headers


def test_missing_client_authentication_is_invalid_client(live: LiveServer) -> None:
    tenant = live.tenant()

    with live.client() as http:
        response = http.post(TOKEN_PATH, data=grant_form(tenant.operator))

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_client_of_another_company_cannot_get_a_token_for_this_operator(live: LiveServer) -> None:
    ours, theirs = live.tenant(), live.tenant()

    with live.client() as http:
        response = http.post(
            TOKEN_PATH,
            auth=(theirs.client_id, theirs.primary_secret),
            data=grant_form(ours.operator),
        )

    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": "the e-mail or password is wrong",
    }


def test_unknown_email_and_wrong_password_get_the_same_answer(live: LiveServer) -> None:
    tenant = live.tenant()
    wrong_password = grant_form(tenant.operator) | {"password": "wrong-password-123"}
    unknown_email = grant_form(tenant.operator) | {"username": "nobody@nowhere.example"}

    with live.client() as http:
        auth = (tenant.client_id, tenant.primary_secret)
        first = http.post(TOKEN_PATH, auth=auth, data=wrong_password)
        second = http.post(TOKEN_PATH, auth=auth, data=unknown_email)

    assert first.status_code == second.status_code == 400
    assert first.json() == second.json()
    assert first.json()["error"] == "invalid_grant"


def test_username_is_case_insensitive(live: LiveServer) -> None:
    tenant = live.tenant()
    form = grant_form(tenant.operator) | {"username": tenant.operator.email.upper()}

    with live.client() as http:
        response = http.post(TOKEN_PATH, auth=(tenant.client_id, tenant.primary_secret), data=form)

    assert response.status_code == 200, response.text


def test_token_refused_when_company_license_has_api_disabled(live: LiveServer) -> None:
    tenant = live.tenant(api_enabled=False)

    response = live.password_grant(tenant)

    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": "API access is not enabled in this company's license",
    }


def test_token_refused_when_operator_has_no_api_permission(live: LiveServer) -> None:
    tenant = live.tenant()
    clerk = live.add_operator(tenant, "clerk", api_permission=False)

    response = live.password_grant(tenant, clerk)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert "System Administrator" in response.json()["error_description"]


def test_token_refused_when_operator_is_deactivated(live: LiveServer) -> None:
    from erpauth.domain.operators import get_operator, set_active

    tenant = live.tenant()
    with live.services.database.session() as session:
        set_active(session, get_operator(session, tenant.operator.email), False)

    response = live.password_grant(tenant)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert "deactivated" in response.json()["error_description"]


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
        ({"grant_type": "authorization_code", "code": "x"}, "unsupported_grant_type"),
        ({"username": "a@b.example", "password": "x"}, "invalid_request"),
        ({"grant_type": "password", "username": "a@b.example"}, "invalid_request"),
        ({"grant_type": "password", "password": "x"}, "invalid_request"),
        ({"grant_type": "password", "username": "", "password": ""}, "invalid_request"),
    ],
)
def test_incomplete_or_unsupported_grants_get_the_rfc_error(
    live: LiveServer, form: dict[str, str], error: str
) -> None:
    tenant = live.tenant()

    with live.client() as http:
        response = http.post(TOKEN_PATH, auth=(tenant.client_id, tenant.primary_secret), data=form)

    assert response.status_code == 400
    assert response.json()["error"] == error
    assert response.json()["error_description"]


def test_unknown_scope_is_invalid_scope(live: LiveServer) -> None:
    tenant = live.tenant()
    form = grant_form(tenant.operator) | {"scope": "api admin:everything"}

    with live.client() as http:
        response = http.post(TOKEN_PATH, auth=(tenant.client_id, tenant.primary_secret), data=form)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_zero_token_expiry_issues_a_token_that_never_expires(live: LiveServer) -> None:
    tenant = live.tenant(token_expiry_hours=0)

    body = live.password_grant(tenant).json()

    assert "expires_in" not in body
    assert "exp" not in jwt.decode(body["access_token"], options={"verify_signature": False})
    assert live.me(body["access_token"]).json()["expires_at"] is None


def test_access_token_is_an_asymmetrically_signed_jwt_with_the_documented_claims(
    live: LiveServer,
) -> None:
    tenant = live.tenant(token_expiry_hours=2)
    token = live.access_token(tenant)

    header = jwt.get_unverified_header(token)
    key = live.services.keys.verification_key(header["kid"])
    claims = jwt.decode(
        token, key.public_key, algorithms=["ES256"], audience=live.settings.audience
    )

    assert header["alg"] == "ES256"
    assert header["typ"] == "at+jwt"
    assert claims["iss"] == live.settings.issuer
    assert claims["sub"] == str(tenant.operator.id)
    assert claims["company_id"] == str(tenant.company_id)
    assert claims["client_id"] == tenant.client_id
    assert claims["scope"] == "api"
    assert claims["exp"] - claims["iat"] == 2 * 3600
    assert len(claims["jti"]) >= 20


def test_issued_tokens_are_recorded_without_the_token_itself(live: LiveServer) -> None:
    from sqlalchemy import select

    from erpauth.storage.models import AccessToken

    tenant = live.tenant()
    token = live.access_token(tenant)
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]

    with live.services.database.session() as session:
        record = session.scalar(select(AccessToken).where(AccessToken.jti == jti))
        stored = [str(getattr(record, c.key)) for c in AccessToken.__table__.columns]

    assert record.operator_id == tenant.operator.id
    assert record.source == "token_endpoint"
    assert all(token not in value for value in stored)
    assert all(token.split(".")[2] not in value for value in stored)
