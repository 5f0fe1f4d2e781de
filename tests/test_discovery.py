"""Discovery: RFC 8414 metadata and a JWKS that verifies access tokens without calling us."""

import jwt
import pytest

from tests.lifecycle import (
    INTROSPECT_PATH,
    JWKS_PATH,
    METADATA_PATH,
    REVOKE_PATH,
    token_pair,
)
from tests.support import TOKEN_PATH, LiveServer


def test_metadata_names_the_issuer_endpoints_and_what_they_support(live: LiveServer) -> None:
    with live.client() as http:
        response = http.get(METADATA_PATH)

    assert response.status_code == 200
    meta = response.json()
    issuer = live.settings.issuer
    assert meta["issuer"] == issuer
    assert meta["token_endpoint"] == issuer + TOKEN_PATH
    assert meta["revocation_endpoint"] == issuer + REVOKE_PATH
    assert meta["introspection_endpoint"] == issuer + INTROSPECT_PATH
    assert meta["jwks_uri"] == issuer + JWKS_PATH
    assert meta["grant_types_supported"] == ["password", "refresh_token"]
    assert meta["scopes_supported"] == ["api"]
    assert meta["response_types_supported"] == []
    for name in ("token", "revocation", "introspection"):
        assert meta[f"{name}_endpoint_auth_methods_supported"] == [
            "client_secret_basic",
            "client_secret_post",
        ]


def test_metadata_issuer_is_the_iss_of_issued_tokens(live: LiveServer) -> None:
    tenant = live.tenant()
    token = token_pair(live, tenant)["access_token"]

    with live.client() as http:
        issuer = http.get(METADATA_PATH).json()["issuer"]

    assert jwt.decode(token, options={"verify_signature": False})["iss"] == issuer


def test_jwks_publishes_public_keys_only(live: LiveServer) -> None:
    with live.client() as http:
        response = http.get(JWKS_PATH)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/jwk-set+json")
    keys = response.json()["keys"]
    assert keys
    for key in keys:
        assert key["kty"] == "EC"
        assert key["crv"] == "P-256"
        assert key["alg"] == "ES256"
        assert key["use"] == "sig"
        assert key["kid"]
        assert "d" not in key


def test_access_token_verifies_offline_with_the_published_jwks(live: LiveServer) -> None:
    tenant = live.tenant()
    token = token_pair(live, tenant)["access_token"]

    # PyJWKClient fetches the JWKS over HTTP and picks the key by the token's kid.
    signing_key = jwt.PyJWKClient(live.url + JWKS_PATH, cache_keys=False).get_signing_key_from_jwt(
        token
    )
    claims = jwt.decode(
        token,
        signing_key.key,
        algorithms=["ES256"],
        audience=live.settings.audience,
        issuer=live.settings.issuer,
    )

    assert claims["sub"] == str(tenant.operator.id)


def test_a_forged_token_fails_offline_verification(live: LiveServer) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    tenant = live.tenant()
    genuine = token_pair(live, tenant)["access_token"]
    header = jwt.get_unverified_header(genuine)
    claims = jwt.decode(genuine, options={"verify_signature": False})
    forged = jwt.encode(
        claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers=header
    )
    with live.client() as http:
        jwks = http.get(JWKS_PATH).json()
    key = next(jwt.PyJWK(k) for k in jwks["keys"] if k["kid"] == header["kid"])

    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(forged, key.key, algorithms=["ES256"], audience=live.settings.audience)


@pytest.mark.parametrize(
    "path", ["/.WELL-KNOWN/OAuth-Authorization-Server", "/.well-known/JWKS.json"]
)
def test_discovery_paths_match_whatever_the_letter_case(live: LiveServer, path: str) -> None:
    with live.client() as http:
        response = http.get(path)

    assert response.status_code == 200


def test_openapi_documents_the_lifecycle_endpoints(live: LiveServer) -> None:
    with live.client() as http:
        paths = http.get("/openapi.json").json()["paths"]

    assert "post" in paths[REVOKE_PATH]
    assert "post" in paths[INTROSPECT_PATH]
    assert "get" in paths[METADATA_PATH]
    assert "get" in paths[JWKS_PATH]
    token_form = paths[TOKEN_PATH]["post"]["requestBody"]["content"][
        "application/x-www-form-urlencoded"
    ]["schema"]["properties"]
    assert token_form["grant_type"]["enum"] == ["password", "refresh_token"]
    assert "refresh_token" in token_form
