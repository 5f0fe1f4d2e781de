"""Turning templates into responses: the Jinja2 environment, dates, notices, redirects."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse

from erpauth.web.access import CSRF_FIELD, Viewer

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

# Pages show tokens, secrets and passwords: no cache may keep a copy.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

# Messages a redirect may ask the next page to show, by code. Only these fixed texts can
# appear, so a crafted link cannot put words of its own on our pages.
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
    notice = NOTICES.get(request.query_params.get("notice", ""))
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
    return HTMLResponse(body, status_code=status, headers=NO_STORE)


def render(template: str, **context: Any) -> str:
    """A template as text, for the rare answer made without a request (middleware)."""
    return _env.get_template(template).render(**context)


def redirect(url: str) -> RedirectResponse:
    """303 See Other: after a form, the browser fetches the next page with GET."""
    return RedirectResponse(url, status_code=303, headers=NO_STORE)
