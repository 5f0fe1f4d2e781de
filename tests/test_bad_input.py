"""Bad input on every endpoint gets a clear 4xx JSON error and never a 500."""

import base64
import json
from urllib.parse import urlencode

import pytest

from tests.lifecycle import INTROSPECT_PATH, REVOKE_PATH
from tests.support import ME_PATH, TOKEN_PATH, LiveServer


def assert_json_error(response, status: int, error: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error_description"]
    if error is not None:
        assert body["error"] == error


def test_json_body_instead_of_a_form_is_an_invalid_request(live: LiveServer) -> None:
    tenant = live.tenant()

    with live.client() as http:
        response = http.post(
            TOKEN_PATH,
            auth=(tenant.client_id, tenant.primary_secret),
            json={"grant_type": "password", "username": "a", "password": "b"},
        )

    assert_json_error(response, 400, "invalid_request")
    assert "x-www-form-urlencoded" in response.json()["error_description"]


def test_missing_content_type_is_an_invalid_request(live: LiveServer) -> None:
    with live.client() as http:
        response = http.post(TOKEN_PATH, content=b"grant_type=password")

    assert_json_error(response, 400, "invalid_request")


def test_duplicated_parameter_is_an_invalid_request(live: LiveServer) -> None:
    tenant = live.tenant()

    with live.client() as http:
        response = http.post(
            TOKEN_PATH,
            auth=(tenant.client_id, tenant.primary_secret),
            content=b"grant_type=password&username=a%40b.example&username=c%40d.example&password=x",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

    assert_json_error(response, 400, "invalid_request")
    assert "username" in response.json()["error_description"]


@pytest.mark.parametrize(
    "body",
    [
        b"grant_type=password&username=\xff\xfe&password=x",
        b"grant_type=password&username=%FF%FE&password=x",
    ],
)
def test_non_utf8_form_is_an_invalid_request(live: LiveServer, body: bytes) -> None:
    tenant = live.tenant()

    with live.client() as http:
        response = http.post(
            TOKEN_PATH,
            auth=(tenant.client_id, tenant.primary_secret),
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

    assert_json_error(response, 400, "invalid_request")


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/x-www-form-urlencoded; charset=UTF-8", 200),
        ('application/x-www-form-urlencoded;charset="utf-8"', 200),
        ("application/x-www-form-urlencoded; charset = utf-8", 200),
        ("application/x-www-form-urlencoded; charset=utf-8; foo=bar", 200),
        ("application/x-www-form-urlencoded; foo=bar", 200),
        ("application/x-www-form-urlencoded; foo=bar; charset=iso-8859-1", 400),
        ("application/x-www-form-urlencoded; charset=iso-8859-1", 400),
    ],
)
def test_only_the_charset_parameter_of_the_content_type_counts(
    live: LiveServer, content_type: str, status: int
) -> None:
    tenant = live.tenant()
    operator = tenant.operator

    with live.client() as http:
        response = http.post(
            TOKEN_PATH,
            auth=(tenant.client_id, tenant.primary_secret),
            content=urlencode(
                {
                    "grant_type": "password",
                    "username": operator.email,
                    "password": operator.password,
                }
            ),
            headers={"Content-Type": content_type},
        )

    assert response.status_code == status, response.text
    if status == 400:
        assert_json_error(response, 400, "invalid_request")
        assert "UTF-8" in response.json()["error_description"]


def test_ten_megabyte_body_is_refused_before_it_is_read(live: LiveServer) -> None:
    with live.client() as http:
        response = http.post(
            TOKEN_PATH,
            content=b"a" * (10 * 1024 * 1024),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

    assert_json_error(response, 413, "request_too_large")
    # Written like every other JSON answer, which Starlette writes compactly.
    assert response.content == json.dumps(response.json(), separators=(",", ":")).encode()


def test_streamed_body_without_length_is_cut_off_at_the_limit(live: LiveServer) -> None:
    def chunks():
        for _ in range(200):
            yield b"a" * 65536

    with live.client() as http:
        response = http.post(
            TOKEN_PATH,
            content=chunks(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

    assert_json_error(response, 413, "request_too_large")


def basic(credentials: bytes) -> str:
    return "Basic " + base64.b64encode(credentials).decode()


@pytest.mark.parametrize("path", [TOKEN_PATH, REVOKE_PATH, INTROSPECT_PATH])
@pytest.mark.parametrize(
    "authorization",
    [
        "Basic !!!not-base64!!!",
        basic(b"no-colon-here"),
        basic(b"\xff\xfe:\xfd"),
        basic(b"client\x00:secret"),
        basic(b"client%00:secret"),
        basic(b"client:secret\x7f"),
        "Basic",
        "Bearer abc",
        "Digest username=x",
    ],
    ids=[
        "not base64",
        "no colon",
        "not utf-8",
        "nul",
        "encoded nul",
        "control character",
        "empty",
        "bearer",
        "digest",
    ],
)
def test_malformed_or_unsupported_client_authentication_is_invalid_client(
    live: LiveServer, path: str, authorization: str
) -> None:
    with live.client() as http:
        response = http.post(
            path,
            data={
                "grant_type": "password",
                "username": "a@b.example",
                "password": "x",
                "token": "t",
            },
            headers={"Authorization": authorization},
        )

    assert_json_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic ")


@pytest.mark.parametrize("path", [TOKEN_PATH, REVOKE_PATH, INTROSPECT_PATH])
def test_client_id_with_a_control_character_in_the_body_is_invalid_client(
    live: LiveServer, path: str
) -> None:
    with live.client() as http:
        response = http.post(
            path,
            data={
                "grant_type": "password",
                "token": "t",
                "client_id": "a\x01",
                "client_secret": "s",
            },
        )

    assert_json_error(response, 401, "invalid_client")


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Basic abc", "Bearer a b", "Token abc", "Bearer " + "a" * 5000],
)
def test_malformed_authorization_header_on_a_protected_api(
    live: LiveServer, authorization: str
) -> None:
    with live.client() as http:
        response = http.get(ME_PATH, headers={"Authorization": authorization})

    assert response.status_code in (400, 401)
    assert response.json()["error"] in ("invalid_request", "invalid_token")
    assert response.headers["www-authenticate"].startswith("Bearer ")


def test_empty_parameters_count_as_missing(live: LiveServer) -> None:
    tenant = live.tenant()

    with live.client() as http:
        response = http.post(
            TOKEN_PATH,
            data={"grant_type": "", "client_id": tenant.client_id, "client_secret": ""},
        )

    assert_json_error(response, 401, "invalid_client")


def test_unknown_path_and_wrong_method_answer_in_json(live: LiveServer) -> None:
    with live.client() as http:
        missing = http.get("/no/such/thing")
        wrong_method = http.get(TOKEN_PATH)

    assert_json_error(missing, 404, "not_found")
    assert missing.json()["error_description"] == "there is nothing at this address"
    assert_json_error(wrong_method, 405, "method_not_allowed")
    assert wrong_method.json()["error_description"] == "this address does not answer GET; use POST"


@pytest.mark.parametrize(
    "path", [TOKEN_PATH + "/", "/authentication/v1/Authentication/Token/", ME_PATH + "//"]
)
def test_a_trailing_slash_is_named_as_what_keeps_the_address_from_being_found(
    live: LiveServer, path: str
) -> None:
    with live.client() as http:
        response = http.post(path, data={"grant_type": "password"})

    assert_json_error(response, 404, "not_found")
    bare = path.rstrip("/")
    assert response.json()["error_description"] == (
        f"there is nothing at this address; use {bare}, without the trailing slash"
    )


def test_parameters_in_the_query_string_are_asked_for_in_the_body(live: LiveServer) -> None:
    tenant = live.tenant()

    with live.client() as http:
        response = http.post(
            TOKEN_PATH,
            auth=(tenant.client_id, tenant.primary_secret),
            params={"grant_type": "password", "username": "a@b.example", "password": "x"},
        )

    assert_json_error(response, 400, "invalid_request")
    assert response.json()["error_description"] == (
        "send the parameters in the request body as application/x-www-form-urlencoded,"
        " not in the query string"
    )


def test_very_long_client_credentials_are_refused_without_work(live: LiveServer) -> None:
    with live.client() as http:
        response = http.post(
            TOKEN_PATH,
            auth=("x" * 2000, "y" * 2000),
            data={"grant_type": "password", "username": "a@b.example", "password": "x"},
        )

    assert_json_error(response, 401, "invalid_client")
