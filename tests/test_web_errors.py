"""Errors on web pages are pages, never a traceback; the API keeps answering in JSON."""

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

import erpauth.web.user_settings
from erpauth.app import create_app
from erpauth.web.errors import is_page_path, prefers_html
from tests.support import ME_PATH, TOKEN_PATH, LiveServer
from tests.web_support import SESSION_COOKIE, Browser

# What Chromium sends when it navigates to an address.
NAVIGATION = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
# The API's answer to an address it does not know, byte for byte.
API_NOT_FOUND = b'{"error":"not_found","error_description":"there is nothing at this address"}'


def signed_in_layout(page: httpx.Response) -> bool:
    return (
        "Go to Home" in page.text and "Sign out" in page.text and "Go to sign-in" not in page.text
    )


def signed_out_layout(page: httpx.Response) -> bool:
    return (
        "Go to sign-in" in page.text
        and "Sign out" not in page.text
        and "Go to Home" not in page.text
    )


def errors_of_every_kind(live: LiveServer, http: httpx.Client) -> dict[str, httpx.Response]:
    """One request for each way a page answers with the error page."""
    too_big = b"current_password=" + b"a" * live.settings.max_body_bytes

    def streamed() -> Iterator[bytes]:
        yield from [b"a" * 4096] * (live.settings.max_body_bytes // 4096 + 2)

    return {
        "404 page path": http.get("/settings/no-such-page"),
        "404 mistyped address": http.get("/no-such-address", headers={"Accept": NAVIGATION}),
        "405": http.get("/signout"),
        "413 announced": http.post("/settings/user/password", content=too_big, headers=FORM),
        "413 streamed": http.post("/settings/user/password", content=streamed(), headers=FORM),
    }


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


def test_error_pages_show_a_signed_in_operator_the_signed_in_layout(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        signed_in = errors_of_every_kind(live, browser.http)
        signed_in["403"] = browser.get("/audit")
    with Browser(live) as stranger:
        signed_out = errors_of_every_kind(live, stranger.http)
    with Browser(live) as stale:
        stale.http.cookies.set(SESSION_COOKIE, "a-session-that-ended-long-ago")
        ended = errors_of_every_kind(live, stale.http)

    for what, page in signed_in.items():
        assert page.status_code == int(what[:3]), (what, page.text)
        assert page.headers["content-type"].startswith("text/html"), what
        assert signed_in_layout(page), what
        assert tenant.operator.email in page.text, what
    for what, page in {**signed_out, **{f"{k} (ended)": v for k, v in ended.items()}}.items():
        assert page.status_code == int(what[:3]), (what, page.text)
        assert signed_out_layout(page), what


def test_a_browser_at_a_mistyped_address_gets_the_404_page(live: LiveServer) -> None:
    tenant = live.tenant()
    with live.client() as http:
        signed_out = http.get("/no-such-address", headers={"Accept": NAVIGATION})
        head = http.head("/no/such/address", headers={"Accept": NAVIGATION})
        api_cased = http.get("/authentication/v1/mee", headers={"Accept": "text/html"})
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        signed_in = browser.http.get("/Home", headers={"Accept": NAVIGATION})

    for page in (signed_out, api_cased, signed_in):
        assert page.status_code == 404
        assert page.headers["content-type"].startswith("text/html")
        assert "There is no page at this address." in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
    assert signed_out_layout(signed_out)
    assert signed_in_layout(signed_in)
    assert head.status_code == 404
    assert head.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Accept": "*/*"},
        {"Accept": "application/json"},
        {"Accept": "application/json, text/html"},
        {"Accept": "text/html;q=0.5, application/json"},
        {"Accept": "text/html;q=0.5, */*"},
        {"Accept": "text/*;q=0.2, */*;q=0.9"},
        {"Accept": NAVIGATION, "Authorization": "Bearer not-a-token"},
        {"Accept": NAVIGATION, "Authorization": "Basic Zm9vOmJhcg=="},
    ],
)
def test_api_clients_at_an_unknown_address_keep_the_json_404(
    live: LiveServer, headers: dict[str, str]
) -> None:
    with live.client() as http:
        unknown = http.get("/authentication/v1/no-such-endpoint", headers=headers)
        elsewhere = http.get("/no-such-address", headers=headers)

    for answer in (unknown, elsewhere):
        assert answer.status_code == 404
        assert answer.headers["content-type"] == "application/json"
        assert answer.content == API_NOT_FOUND


def test_only_navigations_to_unknown_addresses_get_a_page_the_api_keeps_its_errors(
    live: LiveServer,
) -> None:
    html = {"Accept": NAVIGATION}
    with live.client() as http:
        posted = http.post("/no-such-address", data={"a": "b"}, headers=html)
        no_token = http.get(ME_PATH, headers=html)
        wrong_method = http.get(TOKEN_PATH, headers=html)
        too_big = http.post(
            TOKEN_PATH, content=b"a" * (live.settings.max_body_bytes + 1), headers=html | FORM
        )

    assert posted.status_code == 404 and posted.content == API_NOT_FOUND
    assert no_token.status_code == 401 and no_token.json()["error"] == "unauthorized"
    assert wrong_method.status_code == 405 and wrong_method.json()["error"] == "method_not_allowed"
    assert too_big.status_code == 413 and too_big.json()["error"] == "request_too_large"


def test_api_errors_never_read_the_web_session(live: LiveServer) -> None:
    tenant = live.tenant()
    engine = live.services.database.engine
    reads: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "web_sessions" in statement:
            reads.append(statement)

    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        event.listen(engine, "before_cursor_execute", seen)
        try:
            api = [
                browser.get("/authentication/v1/no-such-endpoint"),
                browser.http.get("/no-such-address", headers={"Accept": "application/json"}),
                browser.http.get(
                    "/no-such-address", headers={"Accept": NAVIGATION, "Authorization": "Bearer x"}
                ),
                browser.get(TOKEN_PATH),
                browser.http.post(
                    TOKEN_PATH, content=b"a" * (live.settings.max_body_bytes + 1), headers=FORM
                ),
            ]
            api_reads = list(reads)
            page = browser.get("/settings/no-such-page")
        finally:
            event.remove(engine, "before_cursor_execute", seen)

    assert [answer.status_code for answer in api] == [404, 404, 404, 405, 413]
    assert all(a.headers["content-type"] == "application/json" for a in api)
    assert api_reads == []
    assert page.status_code == 404 and signed_in_layout(page)
    assert reads, "the page itself read the session (the listener sees it)"


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (NAVIGATION, True),
        ("text/html", True),
        ("text/html, application/json;q=0.9", True),
        ("TEXT/HTML; charset=utf-8, */*;q=0.1", True),
        ("", False),
        ("*/*", False),
        ("application/json", False),
        ("text/html, application/json", False),
        ("text/*, */*", False),
        ("text/html;q=0, */*", False),
        ("text/html;q=abc, */*;q=0.5", False),
        ("text/html;q=2", False),
        ("nonsense", False),
    ],
)
def test_which_accept_headers_prefer_html(accept: str, html: bool) -> None:
    assert prefers_html(accept) is html


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


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/signin", "GET, HEAD, POST"),
        ("/signout", "POST"),
        ("/users", "GET, HEAD, POST"),
        ("/settings/user/api/token", "POST"),
        ("/settings/system/api/secrets/primary/show", "POST"),
        (f"/users/{uuid.uuid4()}/tokens", "GET, HEAD"),
    ],
)
def test_a_method_a_page_does_not_take_is_answered_with_every_method_it_does(
    live: LiveServer, path: str, allowed: str
) -> None:
    with live.client() as http:
        options = http.options(path)
        delete = http.delete(path, headers={"Accept": NAVIGATION})

    for answer in (options, delete):
        assert answer.status_code == 405
        assert answer.headers["content-type"].startswith("text/html")
        assert answer.headers["allow"] == allowed


def test_every_page_lists_in_allow_the_methods_of_all_its_routes(live: LiveServer) -> None:
    # Each page's address, with a value for each parameter, and what its routes take.
    taken: dict[str, set[str]] = {}
    for route in create_app(live.settings, live.services).router.routes:
        if isinstance(route, APIRoute) and is_page_path(route.path):
            address = re.sub(r"\{[^}]+\}", "primary", route.path)
            taken.setdefault(address, set()).update(route.methods)
    assert len(taken) >= 15, taken

    with live.client() as http:
        answers = {address: http.options(address) for address in taken}

    for address, methods in taken.items():
        expected = methods | ({"HEAD"} if "GET" in methods else set())
        allow = answers[address].headers.get("allow", "")
        assert set(allow.split(", ")) == expected, address
