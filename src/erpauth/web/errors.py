"""Errors on web pages become pages; the API keeps its JSON errors.

The application's handlers (``erpauth.http.errors``) stay the one place that maps errors for
the API. For a path of the web application they hand over to ``error_page`` instead.
"""

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError, WebSocketRequestValidationError
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from erpauth.abuse import Saturated, Throttled
from erpauth.domain.errors import Conflict, DomainError, NotFound
from erpauth.http.errors import database_unreachable, where
from erpauth.http.middleware import BodyTooLarge
from erpauth.web.access import CsrfRefused, SignInRequired
from erpauth.web.defences import held_back
from erpauth.web.render import page, redirect, render, sentence
from erpauth.web.sessions import clear_session_cookie

log = logging.getLogger("erpauth.web")

Handler = Callable[[Request, Exception], Awaitable[Response]]

PAGE_PREFIXES = ("/signin", "/signout", "/home", "/settings", "/users", "/audit", "/static")

_MESSAGES = {
    400: "The request was incomplete or not valid.",
    403: "You do not have access to this page.",
    404: "There is no page at this address.",
    405: "This page cannot be opened that way.",
    409: "That conflicts with something that exists already.",
    413: "The form was too large to accept.",
}


def is_page_path(path: str) -> bool:
    """Whether a path belongs to the web application rather than the API."""
    return path == "/" or any(path == p or path.startswith(p + "/") for p in PAGE_PREFIXES)


def install_page_errors(app: FastAPI) -> None:
    """Wraps each installed error handler so that web paths get an HTML page."""
    for exc_class, handler in list(app.exception_handlers.items()):
        if exc_class is WebSocketRequestValidationError:
            continue
        app.add_exception_handler(exc_class, _pages_get_html(handler))
    app.add_exception_handler(SignInRequired, _sign_in_required)


def _pages_get_html(api_handler: Handler) -> Handler:
    async def handler(request: Request, exc: Exception) -> Response:
        if not is_page_path(request.url.path):
            return await api_handler(request, exc)
        return error_page(request, exc)

    return handler


def error_page(request: Request, exc: Exception) -> Response:
    status, title, message = _describe(request, exc)
    headers: dict[str, str] = {}
    if isinstance(exc, HTTPException | Throttled | Saturated):
        headers = dict(exc.headers or {})
    response = page(
        request,
        "error.html",
        viewer=getattr(request.state, "viewer", None),
        status=status,
        code=status,
        title=title,
        message=message,
    )
    response.headers.update(headers)
    return response


def _describe(request: Request, exc: Exception) -> tuple[int, str, str]:
    if isinstance(exc, CsrfRefused):
        return 403, "Request refused", str(exc.detail)
    if isinstance(exc, HTTPException) and isinstance(exc.__cause__, BodyTooLarge):
        # A streamed body cut off at the limit, which FastAPI reports as a form it could not read.
        return 413, HTTPStatus(413).phrase, _MESSAGES[413]
    if isinstance(exc, HTTPException):
        phrase = HTTPStatus(exc.status_code).phrase
        default = _MESSAGES.get(exc.status_code, "The request could not be completed.")
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail != phrase else default
        return exc.status_code, phrase, detail
    if isinstance(exc, Throttled | Saturated):
        refused = held_back(exc)
        return refused.status, HTTPStatus(refused.status).phrase, refused.message
    if isinstance(exc, RequestValidationError):
        return 400, "Bad Request", _MESSAGES[400]
    if isinstance(exc, NotFound):
        return 404, "Not Found", sentence(str(exc))
    if isinstance(exc, Conflict):
        return 409, "Conflict", sentence(str(exc))
    if isinstance(exc, DomainError):
        return 400, "Not possible", sentence(str(exc))
    if isinstance(exc, DataError):
        # A value the database refuses (PostgreSQL and a NUL): the request's fault, not an outage.
        log.info("value refused by the database", extra=where(request))
        return 400, "Bad Request", "The request holds a value that cannot be stored."
    if database_unreachable(exc):
        log.error("database unavailable: %s", type(exc).__name__, extra=where(request))
        return (
            503,
            "Service unavailable",
            "The service cannot reach its database right now. Try again in a moment.",
        )
    log.error("unexpected error", exc_info=exc, extra=where(request))
    return (
        500,
        "Something went wrong",
        "Something went wrong on our side. It has been logged; please try again.",
    )


def too_large_page(path: str) -> bytes | None:
    """The 413 page for a web path whose request body was too large; None for the API.

    The body limit is enforced by middleware, before any session is read, so the page is the
    signed-out one.
    """
    if not is_page_path(path):
        return None
    status = 413
    text = render(
        "error.html",
        viewer=None,
        notice=None,
        code=status,
        title=HTTPStatus(status).phrase,
        message=_MESSAGES[status],
    )
    return text.encode()


async def _sign_in_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    query = {}
    if exc.next_path and exc.next_path not in ("/", "/home"):
        query["next"] = exc.next_path
    if exc.session_ended:
        query["notice"] = "session-ended"
    response = redirect("/signin" + (f"?{urlencode(query)}" if query else ""))
    if exc.session_ended:
        clear_session_cookie(response, request.app.state.settings)
    return response
