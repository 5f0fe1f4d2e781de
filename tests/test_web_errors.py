"""Errors on web pages are pages, never a traceback; the API keeps answering in JSON."""

from collections.abc import Iterator

import pytest
from sqlalchemy.exc import OperationalError

import erpauth.web.user_settings
from tests.support import TOKEN_PATH, LiveServer
from tests.web_support import Browser


def test_web_errors_are_pages_while_api_errors_stay_json(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        page = browser.get("/settings/no-such-page")
        wrong_method = browser.get("/signout")
        api = browser.get("/authentication/v1/no-such-endpoint")

    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "There is no page at this address." in page.text
    assert "Traceback" not in page.text
    assert wrong_method.status_code == 405
    assert wrong_method.headers["content-type"].startswith("text/html")
    assert api.status_code == 404
    assert api.json()["error"] == "not_found"


def test_unexpected_failure_on_a_page_is_a_500_page_without_details(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = live.tenant()

    def broken(*_args: object) -> None:
        raise RuntimeError("secret internal detail")

    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        monkeypatch.setattr(erpauth.web.user_settings, "current_web_token", broken)
        response = browser.get("/settings/user/api")

    assert response.status_code == 500
    assert response.headers["content-type"].startswith("text/html")
    assert "Something went wrong on our side" in response.text
    assert "secret internal detail" not in response.text
    assert "Traceback" not in response.text


def test_database_failure_on_a_page_is_a_503_page(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = live.tenant()

    def unreachable(*_args: object) -> None:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        monkeypatch.setattr(erpauth.web.user_settings, "current_web_token", unreachable)
        response = browser.get("/settings/user/api")

    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/html")
    assert "cannot reach its database" in response.text
    assert "connection refused" not in response.text


def test_malformed_operator_id_is_a_404_page(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        response = browser.post("/users/not-a-uuid/active", {"value": "off"})

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "There is no such operator in your company." in response.text


def test_an_oversized_sign_in_form_is_a_413_page_while_the_api_keeps_its_json(
    live: LiveServer,
) -> None:
    big = b"email=" + b"a" * live.settings.max_body_bytes
    form = {"Content-Type": "application/x-www-form-urlencoded"}

    def streamed() -> Iterator[bytes]:
        yield from [b"a" * 4096] * (live.settings.max_body_bytes // 4096 + 2)

    with live.client() as http:
        announced = http.post("/signin", content=big, headers=form)
        in_chunks = http.post("/signin", content=streamed(), headers=form)
        api = http.post(TOKEN_PATH, content=big, headers=form)

    for page in (announced, in_chunks):
        assert page.status_code == 413
        assert page.headers["content-type"].startswith("text/html")
        assert "The form was too large to accept." in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
    assert api.status_code == 413
    assert api.json()["error"] == "request_too_large"


def test_a_nul_character_in_a_form_or_filter_is_a_400_page_not_a_database_outage(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    with Browser(live) as stranger:
        sign_in = stranger.sign_in("nobody\x00@example.com", "any-password-at-all")
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        create = browser.post("/users", {"email": "new\x00@example.com", "display_name": "N"})
        name = browser.post("/users", {"email": "new@example.com", "display_name": "N\x00"})
        audit = browser.get("/audit?kind=%00")

    for response in (sign_in, create, name, audit):
        assert response.status_code == 400, response.text
        assert response.headers["content-type"].startswith("text/html")
        assert "cannot reach its database" not in response.text
