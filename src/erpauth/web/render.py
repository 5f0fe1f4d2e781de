"""Turning templates into responses: the Jinja2 environment, dates, notices, redirects."""

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.responses import Response

from erpauth.security.secrets import equal
from erpauth.web.access import CSRF_FIELD, Viewer, services_of
from erpauth.web.sessions import host_cookie

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

# Pages show tokens, secrets and passwords: no cache may keep a copy.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

# Messages a redirect may ask the next page to show, by code, once (``redirect_with_notice``).
# Only these fixed texts can appear, so nobody can put words of their own on our pages.
NOTICES = {
    "signed-out": "You are signed out.",
    "session-ended": "Your session has ended. Please sign in again.",
    "token-deleted": "Your access token was deleted. It no longer works on the API.",
    "policy-saved": "Token expiry and call limit saved.",
    "primary-regenerated": (
        "The primary client secret was regenerated. Use Show to see the new one; "
        "integrations that used the old one must be given it."
    ),
    "secondary-regenerated": (
        "The secondary client secret was regenerated. Use Show to see the new one; "
        "integrations that used the old one must be given it."
    ),
    "operator-activated": "The operator was activated and can sign in again.",
    "operator-deactivated": (
        "The operator was deactivated: they are signed out and their access tokens stopped working."
    ),
    "api-granted": "API permission granted. The operator can now make access tokens.",
    "api-revoked": "API permission revoked. The operator's access tokens stopped working.",
    "token-revoked": "The token was revoked. It no longer works on the API.",
    "token-gone": "That token was revoked already; nothing was changed.",
    "password-changed": (
        "Your password was changed. Your access tokens stopped working and your other "
        "browsers were signed out; this one stays signed in."
    ),
}


# The notice travels in a cookie that lives a minute, not in the address: a reload, a bookmark
# or the address bar then never shows it again. It names the page it is for and the time it
# ends, with an HMAC made with the server key, so it cannot be planted, moved to another page
# or kept longer than the browser keeps it.
NOTICE_COOKIE = "erpauth_notice"
NOTICE_SECONDS = 60


def when(value: datetime | None, empty: str = "—") -> str:
    """A point in time as people read it, always in UTC so every reader sees the same."""
    if value is None:
        return empty
    value = value.astimezone(UTC)
    return f"{value.day} {value:%b %Y, %H:%M} UTC"


def sentence(text: str) -> str:
    """A domain message ("the call limit must be ...") as a sentence on a page."""
    text = text.strip()
    if not text:
        return text
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["when"] = when
_env.globals["csrf_field"] = CSRF_FIELD


def page(
    request: Request,
    template: str,
    *,
    viewer: Viewer | None = None,
    status: int = 200,
    address: str | None = None,
    **context: Any,
) -> HTMLResponse:
    """The page as an answer. ``address``: where the page lives, for a page that also answers
    forms. The browser then shows that address, and reloading the page fetches it afresh
    instead of sending the form again (which would, say, make yet another access token)."""
    notice = _notice_for(request)
    body = render(
        template,
        request=request,
        viewer=viewer,
        notice=notice,
        path=request.url.path,
        address=address,
        answers_form=request.method == "POST",
        **context,
    )
    response = HTMLResponse(body, status_code=status, headers=NO_STORE)
    if notice is not None:
        # Shown once. A notice for another page is left alone (another tab may be on its way
        # there); its cookie lasts a minute.
        _forget_notice(request, response)
    return response


def render(template: str, **context: Any) -> str:
    """A template as text, for the rare answer made without a request (middleware)."""
    return _env.get_template(template).render(**context)


def redirect(url: str) -> RedirectResponse:
    """303 See Other: after a form, the browser fetches the next page with GET."""
    return RedirectResponse(url, status_code=303, headers=NO_STORE)


def redirect_with_notice(request: Request, url: str, notice: str) -> RedirectResponse:
    """A redirect whose next page shows the notice once; the address stays ``url``."""
    services = services_of(request)
    response = redirect(url)
    path = urlsplit(url).path
    until = int(time.time()) + NOTICE_SECONDS
    response.set_cookie(
        _notice_cookie(request),
        f"{notice}.{until}.{_notice_mac(request, path, notice, until)}",
        max_age=NOTICE_SECONDS,
        httponly=True,
        secure=services.settings.secure_cookies,
        samesite="lax",
        path="/",
    )
    return response


def _notice_for(request: Request) -> str | None:
    """The notice a redirect left for this page, if the cookie is genuine and for this page."""
    value = request.cookies.get(_notice_cookie(request), "")
    code, _, rest = value.partition(".")
    until, _, mac = rest.partition(".")
    if code not in NOTICES or not until.isdigit() or int(until) < time.time():
        return None  # the browser keeps it a minute; a copy kept longer is worth nothing
    if not equal(mac, _notice_mac(request, request.url.path, code, int(until))):
        return None
    return NOTICES[code]


def _notice_mac(request: Request, path: str, code: str, until: int) -> str:
    return services_of(request).box.derive(f"notice:{path}:{code}:{until}")


def _notice_cookie(request: Request) -> str:
    return host_cookie(services_of(request).settings, NOTICE_COOKIE)


def _forget_notice(request: Request, response: Response) -> None:
    response.delete_cookie(
        _notice_cookie(request),
        path="/",
        secure=services_of(request).settings.secure_cookies,
        httponly=True,
        samesite="lax",
    )
