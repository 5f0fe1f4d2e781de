"""Attacks on the API: forged and tampered tokens, cross-company access, hostile input."""

import base64
import hashlib
import hmac
import json
import socket
import time
import uuid
from collections.abc import Iterator

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import StartServer
from tests.lifecycle import (
    INTROSPECT_PATH,
    JWKS_PATH,
    METADATA_PATH,
    REVOKE_PATH,
    TOKENS_PATH,
    bearer,
    introspect,
    refresh,
    revoke,
    token_pair,
)
from tests.support import ME_PATH, TOKEN_PATH, LiveServer

# --- forged and tampered access tokens --------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_parts(header: dict, claims: dict) -> str:
    return b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def resigned(live: LiveServer, claims: dict, **header: str) -> str:
    """The claims signed with the server's real key: only claim checks can refuse them."""
    key = live.services.keys.signing_key()
    headers = {"kid": key.kid, "typ": "at+jwt", **header}
    return jwt.encode(claims, key.private_key, algorithm="ES256", headers=headers)


def refused(live: LiveServer, token: str) -> dict:
    response = live.me(token)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith('Bearer realm="erpauth"')
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    return response.json()


@pytest.fixture
def token(live: LiveServer) -> str:
    return live.access_token(live.tenant())


def test_token_with_alg_none_is_refused(live: LiveServer, token: str) -> None:
    header = {**jwt.get_unverified_header(token), "alg": "none"}

    body = refused(live, unsigned_parts(header, claims_of(token)) + ".")

    assert body["error_description"] == "the access token is not signed by this server"


def test_token_hmac_signed_with_the_public_key_pem_is_refused(live: LiveServer, token: str) -> None:
    kid = jwt.get_unverified_header(token)["kid"]
    pem = live.services.keys.verification_key(kid).public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = unsigned_parts({"alg": "HS256", "kid": kid, "typ": "at+jwt"}, claims_of(token))
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()

    body = refused(live, f"{signing_input}.{b64(signature)}")

    assert body["error_description"] == "the access token is not signed by this server"


def test_token_signed_with_an_unknown_kid_is_refused(live: LiveServer, token: str) -> None:
    attacker = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode(
        claims_of(token), attacker, algorithm="ES256", headers={"kid": "attacker-key"}
    )

    body = refused(live, forged)

    assert body["error_description"] == "the access token is signed with an unknown key"


def test_token_signed_by_another_key_under_a_known_kid_is_refused(
    live: LiveServer, token: str
) -> None:
    attacker = ec.generate_private_key(ec.SECP256R1())
    kid = jwt.get_unverified_header(token)["kid"]
    forged = jwt.encode(claims_of(token), attacker, algorithm="ES256", headers={"kid": kid})

    refused(live, forged)


def test_token_carrying_its_own_jwk_is_not_trusted(live: LiveServer, token: str) -> None:
    attacker = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(attacker.public_key()))
    kid = jwt.get_unverified_header(token)["kid"]
    forged = jwt.encode(
        claims_of(token), attacker, algorithm="ES256", headers={"kid": kid, "jwk": jwk}
    )

    refused(live, forged)


def test_expired_token_is_refused_even_with_a_valid_signature(live: LiveServer, token: str) -> None:
    now = int(time.time())
    claims = claims_of(token) | {"iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}

    body = refused(live, resigned(live, claims))

    assert body["error_description"] == (
        "the access token has expired; get a new one with the refresh token or by signing in"
    )


def test_not_yet_valid_token_is_refused_even_with_a_valid_signature(
    live: LiveServer, token: str
) -> None:
    claims = claims_of(token) | {"nbf": int(time.time()) + 3600}

    body = refused(live, resigned(live, claims))

    assert body["error_description"] == "the access token is invalid"


@pytest.mark.parametrize(
    "changed",
    [{"iss": "https://evil.example"}, {"aud": "another-api"}, {"aud": None}, {"iss": None}],
    ids=["wrong issuer", "wrong audience", "no audience", "no issuer"],
)
def test_token_for_another_issuer_or_audience_is_refused(
    live: LiveServer, token: str, changed: dict
) -> None:
    claims = {k: v for k, v in (claims_of(token) | changed).items() if v is not None}

    body = refused(live, resigned(live, claims))

    assert body["error_description"] == "the access token is invalid"


def test_payload_swapped_under_a_valid_signature_is_refused(live: LiveServer) -> None:
    ours, theirs = live.tenant(), live.tenant()
    our_token, their_token = live.access_token(ours), live.access_token(theirs)
    header, _, signature = our_token.split(".")
    their_payload = their_token.split(".")[1]

    refused(live, f"{header}.{their_payload}.{signature}")


def test_claims_rewritten_and_resigned_with_the_real_key_do_not_match_the_issued_token(
    live: LiveServer,
) -> None:
    # Even a thief of the signing key cannot move an issued token to another company:
    # the server only accepts the exact token it recorded (by digest).
    ours, theirs = live.tenant(), live.tenant()
    claims = claims_of(live.access_token(ours)) | {"company_id": str(theirs.company_id)}

    body = refused(live, resigned(live, claims))

    assert body["error_description"] == "the access token is not known"


def test_made_up_token_id_is_refused(live: LiveServer, token: str) -> None:
    claims = claims_of(token) | {"jti": "a-token-id-nobody-issued"}

    body = refused(live, resigned(live, claims))

    assert body["error_description"] == "the access token is not known"


# --- cross-company access -----------------------------------------------------------------


def test_a_token_speaks_only_for_its_own_company(live: LiveServer) -> None:
    ours, theirs = live.tenant(), live.tenant()

    body = live.me(live.access_token(ours)).json()

    assert body["company"]["id"] == str(ours.company_id)
    assert body["operator"]["id"] == str(ours.operator.id)
    assert str(theirs.company_id) not in json.dumps(body)


def test_another_companys_client_in_the_body_cannot_sign_in_our_operator(
    live: LiveServer,
) -> None:
    ours, theirs = live.tenant(), live.tenant()
    form = {
        "grant_type": "password",
        "username": ours.operator.email,
        "password": ours.operator.password,
        "client_id": theirs.client_id,
        "client_secret": theirs.primary_secret,
    }

    with live.client() as http:
        response = http.post(TOKEN_PATH, data=form)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_our_client_id_with_another_companys_secret_is_refused(live: LiveServer) -> None:
    ours, theirs = live.tenant(), live.tenant()

    with live.client() as http:
        response = http.post(
            TOKEN_PATH,
            auth=(ours.client_id, theirs.primary_secret),
            data={"grant_type": "password", "username": ours.operator.email, "password": "x"},
        )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


@pytest.mark.parametrize("grant_type", ["password", "refresh_token"])
def test_our_client_id_with_anything_appended_is_no_client(
    live: LiveServer, grant_type: str
) -> None:
    """A client ID is matched whole: a suffix must not pass for the client (and so get a
    per-client rate-limit bucket of its own for every suffix tried)."""
    tenant = live.tenant()
    pair = token_pair(live, tenant)
    form = {
        "password": {
            "grant_type": "password",
            "username": tenant.operator.email,
            "password": tenant.operator.password,
        },
        "refresh_token": {"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]},
    }[grant_type]

    with live.client() as http:
        response = http.post(
            TOKEN_PATH, auth=(tenant.client_id + "-not-ours", tenant.primary_secret), data=form
        )

    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"


def test_another_companys_client_cannot_revoke_our_tokens_and_learns_nothing(
    live: LiveServer,
) -> None:
    ours, theirs = live.tenant(), live.tenant()
    pair = token_pair(live, ours)
    unknown = revoke(live, theirs, "no-such-token")

    answers = [
        revoke(live, theirs, pair[kind], token_type_hint=hint)
        for kind in ("access_token", "refresh_token")
        for hint in ("access_token", "refresh_token")
    ]
    with live.client() as http:
        form = {
            "token": pair["refresh_token"],
            "client_id": theirs.client_id,
            "client_secret": theirs.secondary_secret,
        }
        answers.append(http.post(REVOKE_PATH, data=form))

    for answer in answers:
        assert (answer.status_code, answer.content) == (unknown.status_code, unknown.content)
        assert answer.headers["cache-control"] == unknown.headers["cache-control"]
    assert live.me(pair["access_token"]).status_code == 200
    assert refresh(live, ours, pair["refresh_token"]).status_code == 200


def test_another_companys_client_sees_our_tokens_exactly_like_made_up_ones(
    live: LiveServer,
) -> None:
    ours, theirs = live.tenant(), live.tenant()
    pair = token_pair(live, ours)
    made_up = introspect(live, theirs, "no-such-token")

    answers = [
        introspect(live, theirs, pair[kind], token_type_hint=hint)
        for kind in ("access_token", "refresh_token")
        for hint in ("access_token", "refresh_token")
    ]

    assert made_up.json() == {"active": False}
    for answer in answers:
        assert (answer.status_code, answer.json()) == (200, made_up.json())
    assert introspect(live, ours, pair["access_token"]).json()["active"] is True
    assert introspect(live, ours, pair["refresh_token"]).json()["active"] is True


@pytest.mark.parametrize("path", [REVOKE_PATH, INTROSPECT_PATH])
def test_our_client_id_with_another_companys_secret_can_neither_revoke_nor_introspect(
    live: LiveServer, path: str
) -> None:
    ours, theirs = live.tenant(), live.tenant()
    token = live.access_token(ours)

    with live.client() as http:
        response = http.post(
            path, auth=(ours.client_id, theirs.primary_secret), data={"token": token}
        )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert "active" not in response.json()
    assert live.me(token).status_code == 200


@pytest.mark.parametrize("path", [TOKEN_PATH, REVOKE_PATH, INTROSPECT_PATH])
def test_an_access_token_is_no_client_authentication(live: LiveServer, path: str) -> None:
    tenant = live.tenant()
    token = live.access_token(tenant)
    form = {"token": token, "grant_type": "password", "username": tenant.operator.email}

    with live.client() as http:
        response = http.post(path, data=form, headers=bearer(token))

    # RFC 6749 §5.2: an unsupported way of authenticating the client is invalid_client.
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic ")
    assert live.me(token).status_code == 200


# --- the sessions API across companies and roles ------------------------------------------

OPERATOR_TOKENS_PATH = "/authentication/v1/operators/{operator_id}/tokens"


def operator_tokens(operator_id: object, jti: str | None = None) -> str:
    path = OPERATOR_TOKENS_PATH.format(operator_id=operator_id)
    return path if jti is None else f"{path}/{jti}"


def test_no_one_of_another_company_can_revoke_our_token_through_the_sessions_api(
    live: LiveServer,
) -> None:
    ours, theirs = live.tenant(), live.tenant()
    our_token = live.access_token(ours)
    jti = claims_of(our_token)["jti"]
    their_operator = bearer(live.access_token(theirs))
    their_admin = bearer(live.access_token(theirs, theirs.admin))

    with live.client() as http:
        as_own = [
            http.delete(f"{TOKENS_PATH}/{jti}", headers=their_operator),
            http.delete(f"{TOKENS_PATH}/{jti}", headers=their_admin),
            http.delete(operator_tokens(theirs.operator.id, jti), headers=their_admin),
        ]
        unknown_token = http.delete(f"{TOKENS_PATH}/no-such-token", headers=their_admin)
        as_ours = http.delete(operator_tokens(ours.operator.id, jti), headers=their_admin)
        unknown_operator = http.delete(operator_tokens(uuid.uuid4(), jti), headers=their_admin)

    for answer in as_own:
        assert (answer.status_code, answer.json()) == (404, unknown_token.json())
    assert (as_ours.status_code, as_ours.json()) == (404, unknown_operator.json())
    assert live.me(our_token).status_code == 200


def test_an_operator_without_admin_rights_gets_403_from_every_admin_sessions_endpoint(
    live: LiveServer,
) -> None:
    tenant, other = live.tenant(), live.tenant()
    clerk = bearer(live.access_token(tenant))
    admins_token = live.access_token(tenant, tenant.admin)
    admin_jti = claims_of(admins_token)["jti"]

    with live.client() as http:
        answers = [
            http.get(operator_tokens(tenant.admin.id), headers=clerk),
            http.delete(operator_tokens(tenant.admin.id, admin_jti), headers=clerk),
            http.get(operator_tokens(other.admin.id), headers=clerk),
            http.delete(operator_tokens(uuid.uuid4(), admin_jti), headers=clerk),
            http.get(operator_tokens("not-an-operator"), headers=clerk),
        ]

    # The same answer whoever the target is: it tells nothing about other operators.
    assert [answer.status_code for answer in answers] == [403] * len(answers)
    assert len({answer.text for answer in answers}) == 1
    assert answers[0].json()["error"] == "forbidden"
    assert live.me(admins_token).status_code == 200


HOSTILE_PATH_VALUES = {
    "not a uuid": "not-a-uuid",
    "nul": "%00",
    "nul inside": "a%00b",
    "10 KB": "x" * 10_000,
    "not utf-8": "%ff%fe",
    "encoded slash": "..%2f..",
    "space": "%20",
    "emoji": "%F0%9F%98%80" * 20,
    "sql": "'%20OR%20'1'='1",
    "65 characters": "a" * 65,
}


@pytest.mark.parametrize("value", HOSTILE_PATH_VALUES.values(), ids=HOSTILE_PATH_VALUES.keys())
def test_hostile_token_and_operator_ids_in_paths_are_just_not_found(
    live: LiveServer, value: str
) -> None:
    tenant = live.tenant()
    admin = bearer(live.access_token(tenant, tenant.admin))
    token = live.access_token(tenant)

    with live.client() as http:
        answers = [
            http.delete(f"{TOKENS_PATH}/{value}", headers=admin),
            http.get(operator_tokens(value), headers=admin),
            http.delete(operator_tokens(value, value), headers=admin),
            http.delete(operator_tokens(tenant.operator.id, value), headers=admin),
        ]

    assert [answer.status_code for answer in answers] == [404] * len(answers)
    assert {answer.json()["error"] for answer in answers} == {"not_found"}
    assert live.me(token).status_code == 200


# --- oversized and malformed input on every endpoint ---------------------------------------

ENDPOINTS = [
    ("POST", TOKEN_PATH),
    ("POST", REVOKE_PATH),
    ("POST", INTROSPECT_PATH),
    ("GET", ME_PATH),
    ("GET", TOKENS_PATH),
    ("DELETE", TOKENS_PATH + "/{jti}"),
    ("GET", OPERATOR_TOKENS_PATH),
    ("DELETE", OPERATOR_TOKENS_PATH + "/{jti}"),
    ("GET", METADATA_PATH),
    ("GET", JWKS_PATH),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/assets/swagger-init.js"),
]


def concrete(path: str) -> str:
    """A documented path with made-up values in its parameters."""
    return path.format(jti="made-up-token-id", operator_id=uuid.UUID(int=7))


def test_every_documented_endpoint_is_in_the_attack_list(live: LiveServer) -> None:
    with live.client() as http:
        paths = http.get("/openapi.json").json()["paths"]

    documented = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    assert documented <= set(ENDPOINTS)


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_an_announced_oversized_body_is_refused_on_every_endpoint(
    live: LiveServer, method: str, path: str
) -> None:
    big = b"a" * (live.settings.max_body_bytes + 1)

    with live.client() as http:
        response = http.request(method, concrete(path), content=big)

    assert response.status_code == 413
    assert response.json()["error"] == "request_too_large"


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_a_streamed_oversized_body_is_refused_on_every_endpoint(
    live: LiveServer, method: str, path: str
) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(live.settings.max_body_bytes // 4096 + 2):
            yield b"b" * 4096

    with live.client() as http:
        response = http.request(
            method,
            concrete(path),
            content=chunks(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

    # An endpoint that never reads the body may answer before the body is over.
    assert response.status_code < 500
    if method == "POST":
        assert response.status_code == 413


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize(
    "request_line_tail",
    [
        "?%zz=%ff&a=%00",
        "?" + "x=1&" * 2000,
        "/%2e%2e/%2e%2e/etc/passwd",
        "%00",
        ";jsessionid=x",
    ],
    ids=["bad percent-encoding", "many params", "dot-dot", "nul", "path params"],
)
def test_malformed_urls_never_cause_a_server_error(
    live: LiveServer, method: str, path: str, request_line_tail: str
) -> None:
    response = raw_request(live, f"{method} {concrete(path)}{request_line_tail} HTTP/1.1".encode())

    assert response.status < 500, response.head


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize(
    "header",
    [
        b"Authorization: Bearer \xff\xfe\x00",
        b"Authorization: Bearer " + b"A" * 5000,
        b"Authorization: Basic %%%",
        b"Authorization: " + b"x " * 1000,
        b"Content-Type: application/x-www-form-urlencoded; charset=\xff",
        b"Content-Type: multipart/form-data; boundary=" + b"-" * 2000,
        b"Content-Length: -1",
        b"Content-Length: 99999999999999999999",
        b"X-Big: " + b"z" * 40_000,
    ],
    ids=[
        "binary bearer",
        "long bearer",
        "bad basic",
        "long scheme",
        "bad charset",
        "long boundary",
        "negative length",
        "huge length",
        "huge header",
    ],
)
def test_malformed_headers_never_cause_a_server_error(
    live: LiveServer, method: str, path: str, header: bytes
) -> None:
    response = raw_request(live, f"{method} {concrete(path)} HTTP/1.1".encode(), header)

    assert response.status < 500, response.head


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded", b"\xff\xfe\xfd"),
        ("application/x-www-form-urlencoded", b"grant_type=password&grant_type=password"),
        ("application/x-www-form-urlencoded", b"&".join(b"f%d=1" % i for i in range(500))),
        ("application/x-www-form-urlencoded", b"grant_type=password&username=%00&password=x"),
        ("application/x-www-form-urlencoded", b"%%%%===&&&"),
        ("application/json", b'{"grant_type": "password"}'),
        ("application/json", b"[" * 5000),
        ("text/plain", b"grant_type=password"),
        ("multipart/form-data; boundary=x", b"--x\r\nbroken"),
        ("", b""),
    ],
)
def test_malformed_token_requests_get_an_oauth_error(
    live: LiveServer, content_type: str, body: bytes
) -> None:
    tenant = live.tenant()
    headers = {"Content-Type": content_type} if content_type else {}

    with live.client() as http:
        response = http.post(
            TOKEN_PATH,
            content=body,
            headers=headers,
            auth=(tenant.client_id, tenant.primary_secret),
        )

    assert response.status_code == 400, response.text
    assert response.json()["error"] in ("invalid_request", "invalid_grant")


FORM = "application/x-www-form-urlencoded"
# Each holds the real token where it says {token}: a request that is refused must not act on it.
HOSTILE_TOKEN_REQUESTS = {
    "not utf-8": (FORM, b"token=\xff\xfe{token}"),
    "percent-encoded not utf-8": (FORM, b"token={token}%ff%fe"),
    "token twice": (FORM, b"token={token}&token={token}"),
    "hint twice": (FORM, b"token={token}&token_type_hint=a&token_type_hint=b"),
    "nul": (FORM, b"token={token}%00"),
    "500 fields": (FORM, b"&".join(b"f%d=1" % i for i in range(500)) + b"&token={token}"),
    "latin-1": (FORM + "; charset=latin1", b"token={token}"),
    "json": ("application/json", b'{"token": "{token}"}'),
    "text": ("text/plain", b"token={token}"),
    "multipart": (
        "multipart/form-data; boundary=x",
        b'--x\r\nContent-Disposition: form-data; name="token"\r\n\r\n{token}\r\n--x--\r\n',
    ),
    "no content type": ("", b"token={token}"),
}


@pytest.mark.parametrize("path", [REVOKE_PATH, INTROSPECT_PATH])
@pytest.mark.parametrize(
    ("content_type", "body"), HOSTILE_TOKEN_REQUESTS.values(), ids=HOSTILE_TOKEN_REQUESTS.keys()
)
def test_malformed_revocation_and_introspection_requests_are_refused_without_effect(
    live: LiveServer, path: str, content_type: str, body: bytes
) -> None:
    tenant = live.tenant()
    token = live.access_token(tenant)
    headers = {"Content-Type": content_type} if content_type else {}

    with live.client() as http:
        response = http.post(
            path,
            content=body.replace(b"{token}", token.encode()),
            headers=headers,
            auth=(tenant.client_id, tenant.primary_secret),
        )

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert live.me(token).status_code == 200


@pytest.mark.parametrize("length", [4097, 60_000])
def test_an_oversized_token_is_unknown_to_revocation_and_introspection(
    live: LiveServer, length: int
) -> None:
    tenant = live.tenant()
    token = live.access_token(tenant)
    oversized = (token * (length // len(token) + 1))[:length]

    revoked = revoke(live, tenant, oversized)
    looked_up = introspect(live, tenant, oversized)

    assert (revoked.status_code, revoked.content) == (200, b"")
    assert (looked_up.status_code, looked_up.json()) == (200, {"active": False})
    assert live.me(token).status_code == 200


@pytest.mark.parametrize(
    "field", ["username", "password", "client_id", "client_secret", "scope", "grant_type"]
)
def test_oversized_token_request_fields_are_refused_without_a_server_error(
    live: LiveServer, field: str
) -> None:
    tenant = live.tenant()
    form = {
        "grant_type": "password",
        "username": tenant.operator.email,
        "password": tenant.operator.password,
        "client_id": tenant.client_id,
        "client_secret": tenant.primary_secret,
    } | {field: "x" * 60_000}

    with live.client() as http:
        response = http.post(TOKEN_PATH, data=form)

    assert 400 <= response.status_code < 500
    assert "error" in response.json()


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
def test_unsupported_methods_get_a_json_405(live: LiveServer, method: str) -> None:
    with live.client() as http:
        response = http.request(method, ME_PATH)

    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"


def test_head_is_answered_like_get_without_a_body(live: LiveServer) -> None:
    # RFC 9110 §9.1: a general-purpose server supports HEAD wherever it supports GET.
    tenant = live.tenant()
    token = live.access_token(tenant)
    with live.client() as http:
        for path, headers in [(ME_PATH, bearer(token)), ("/signin", {}), (METADATA_PATH, {})]:
            get = http.get(path, headers=headers)
            head = http.head(path, headers=headers)

            assert head.status_code == get.status_code == 200, path
            assert head.headers["content-type"] == get.headers["content-type"]
            assert head.content == b""


# --- connections that are slow on purpose ---------------------------------------------------


def test_a_connection_that_never_finishes_its_headers_is_closed(start_server: StartServer) -> None:
    server = start_server(http_header_timeout_seconds=0.5)

    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
        connection.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        answer = read_all(connection)

    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"request_timeout" in answer


def test_a_request_whose_body_never_finishes_is_closed(start_server: StartServer) -> None:
    server = start_server(http_body_timeout_seconds=0.5)
    head = (
        f"POST {TOKEN_PATH} HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
    )

    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
        connection.sendall(head.encode() + b"grant_type=pass")
        answer = read_all(connection)

    assert answer.startswith(b"HTTP/1.1 408 ")


def test_hsts_is_sent_when_the_service_is_public_over_https(start_server: StartServer) -> None:
    https = start_server(public_url="https://erp.example")
    plain = start_server()

    with https.client() as http:
        secure = http.get("/health/live")
    with plain.client() as http:
        insecure = http.get("/health/live")

    assert secure.headers["strict-transport-security"].startswith("max-age=")
    assert "strict-transport-security" not in insecure.headers
    assert "frame-ancestors 'none'" in secure.headers["content-security-policy"]


# --- helpers --------------------------------------------------------------------------------


class RawResponse:
    def __init__(self, data: bytes) -> None:
        self.head = data[:300]
        status_line = data.split(b"\r\n", 1)[0].split(b" ")
        self.status = int(status_line[1]) if len(status_line) > 1 else 0


def raw_request(live: LiveServer, request_line: bytes, *headers: bytes) -> RawResponse:
    """Sends bytes as they are, for what an HTTP client library would refuse to send."""
    lines = [request_line, b"Host: 127.0.0.1", *headers, b"Connection: close", b"", b""]
    with socket.create_connection(("127.0.0.1", live.port), timeout=30) as connection:
        connection.sendall(b"\r\n".join(lines))
        data = read_all(connection)
    assert data, "the server closed the connection without an answer"
    return RawResponse(data)


def read_all(connection: socket.socket) -> bytes:
    data = b""
    while chunk := connection.recv(65536):
        data += chunk
    return data


@pytest.mark.parametrize(
    ("method", "path"), [("POST", TOKEN_PATH + "/"), ("GET", ME_PATH + "/"), ("GET", "/home/")]
)
def test_a_trailing_slash_is_not_redirected_to_the_host_the_request_names(
    live: LiveServer, method: str, path: str
) -> None:
    # A redirect built from the Host header sends the client, and a token request's password
    # and client secret with it (307 keeps the body), wherever that header points.
    form = {"grant_type": "password", "username": "someone@example.com", "password": "guess"}
    with live.client() as http:
        response = http.request(
            method,
            path,
            headers={"Host": "attacker.example"},
            data=form if method == "POST" else None,
        )

    assert response.status_code == 404
    assert "location" not in response.headers
