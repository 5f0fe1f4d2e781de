"""Driving the web pages over real HTTP, as a browser without JavaScript would."""

import base64
import html
import json
import re
import uuid
from typing import Any

import httpx
from sqlalchemy import select

from erpauth.storage.models import AccessToken, AuditEvent
from tests.support import LiveServer, Operator

SESSION_COOKIE = "erpauth_session"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')
_NEW_TOKEN = re.compile(r'<textarea id="access-token"[^>]*>([^<]+)</textarea>')
_SECRET = re.compile(
    r'<input id="secret-(primary|secondary)" class="mono" readonly value="([^"]+)"'
)
_NEW_PASSWORD = re.compile(r'<input id="new-password" class="mono" readonly value="([^"]+)"')


class Browser:
    """A cookie-keeping HTTP client that signs in through the sign-in form.

    ``source`` is the loopback address it connects from (127.0.0.0/8 all reach the server),
    which is how tests play people at different addresses.
    """

    def __init__(self, live: LiveServer, *, source: str = "127.0.0.1") -> None:
        self.live = live
        transport = httpx.HTTPTransport(local_address=source)
        self.http = live.client(follow_redirects=False, transport=transport)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.http.close()

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def sign_in(self, email: str, password: str) -> httpx.Response:
        page = self.http.get("/signin")
        form_token = _FORM_TOKEN.search(page.text)
        assert form_token, page.text
        return self.http.post(
            "/signin",
            data={"email": email, "password": password, "form_token": form_token.group(1)},
        )

    def sign_in_as(self, operator: Operator) -> "Browser":
        response = self.sign_in(operator.email, operator.password)
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/home"
        return self

    @property
    def session_id(self) -> str | None:
        return self.http.cookies.get(SESSION_COOKIE)

    def csrf(self) -> str:
        page = self.http.get("/home")
        match = _CSRF.search(page.text)
        assert match, f"no CSRF token on /home ({page.status_code})"
        return match.group(1)

    def post(self, path: str, data: dict[str, str] | None = None, *, csrf: bool = True) -> Any:
        form = dict(data or {})
        if csrf:
            form["csrf_token"] = self.csrf()
        return self.http.post(path, data=form)

    def force_password_change(self, operator_id: uuid.UUID) -> httpx.Response:
        """Force password change on the Users page, as the page shows the operator now."""
        version = password_version_on(self.get("/users").text, operator_id)
        assert version is not None, "no Force password change for that operator"
        return self.post(f"/users/{operator_id}/password", {"password_version": version})

    def generate_token(self, operator: Operator) -> str:
        response = self.post(
            "/settings/user/api/token", {"email": operator.email, "password": operator.password}
        )
        assert response.status_code == 200, response.text
        token = new_token_on(response.text)
        assert token is not None, "the new token is not on the page"
        return token


def jti_of(token: str) -> str:
    """The token's id, read from its claims (without checking the signature)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"]


def new_token_on(page: str) -> str | None:
    match = _NEW_TOKEN.search(page)
    return html.unescape(match.group(1)).strip() if match else None


def secret_on(page: str, slot: str) -> str | None:
    for found_slot, value in _SECRET.findall(page):
        if found_slot == slot:
            return html.unescape(value)
    return None


def new_password_on(page: str) -> str | None:
    match = _NEW_PASSWORD.search(page)
    return html.unescape(match.group(1)) if match else None


def password_version_on(page: str, operator_id: uuid.UUID) -> str | None:
    """The password version the Users page's Force password change form carries."""
    form = rf'action="/users/{operator_id}/password".*?name="password_version" value="([^"]+)"'
    match = re.search(form, page, re.S)
    return match.group(1) if match else None


def live_web_tokens(live: LiveServer, operator_id: uuid.UUID) -> list[AccessToken]:
    with live.services.database.session() as session:
        return list(
            session.scalars(
                select(AccessToken).where(
                    AccessToken.operator_id == operator_id,
                    AccessToken.source == "web",
                    AccessToken.revoked_at.is_(None),
                )
            )
        )


def audit_kinds(live: LiveServer, company_id: uuid.UUID) -> list[tuple[str, str]]:
    with live.services.database.session() as session:
        rows = session.execute(
            select(AuditEvent.kind, AuditEvent.outcome)
            .where(AuditEvent.company_id == company_id)
            .order_by(AuditEvent.id)
        ).all()
    return [(kind, outcome) for kind, outcome in rows]
