"""Errors on web pages become pages; the API keeps its JSON errors.

The application's handlers (``erpauth.http.errors``) stay the one place that maps errors for
the API. For a path of the web application they hand over to ``error_page`` instead, and so
does a 404 for an address no route knows when a browser navigates to it (``browser_lost``).
The page shows the signed-in layout to a signed-in operator; their session is read only
when a page is shown, never for an answer of the API.
"""

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError, WebSocketRequestValidationError
from sqlalchemy.exc import DataError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Scope

from erpauth.abuse import Saturated, Throttled
from erpauth.domain.errors import Conflict, DomainError, NotFound
from erpauth.http.errors import database_unreachable, where
from erpauth.http.middleware import BodyTooLarge
from erpauth.web.access import CsrfRefused, SignInRequired, Viewer, current_viewer, session_id_of
from erpauth.web.defences import held_back
from erpauth.web.render import page, redirect, redirect_with_notice, render, sentence
from erpauth.web.sessions import clear_session_cookie

log = logging.getLogger("erpauth.web")

Handler = Callable[[Request, Exception], Awaitable[Response]]

# request.state.viewer not set: no page read the session (access.current_viewer sets it).
_UNREAD = object()

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


def browser_lost(request: Request, exc: Exception) -> bool:
    """A browser navigated to an address that no route, page or API, answers.

    It gets the 404 page rather than the API's JSON. A request with an ``Authorization``
    header, anything but GET (HEAD arrives as GET), and an ``Accept`` that does not rank
    HTML above JSON (``*/*``, ``application/json``, none at all) are an API client's: they
    keep the JSON error. A browser's navigation ranks ``text/html`` first.
    """
    return (
        isinstance(exc, HTTPException)
        and exc.status_code == 404
        and "route" not in request.scope  # the router matched nothing (Starlette sets it)
        and request.method == "GET"
        and "authorization" not in request.headers
        and prefers_html(request.headers.get("accept", ""))
    )


def prefers_html(accept: str) -> bool:
    """Whether an ``Accept`` header ranks ``text/html`` strictly above ``application/json``.

    Each type takes the quality of the most specific range that matches it (RFC 9110
    §12.5.1): ``text/html`` before ``text/*`` before ``*/*``. A tie is not a preference.
    """
    ranges: dict[str, float] = {}
    for part in accept.split(",")[:32]:
        media, *params = (piece.strip() for piece in part.split(";"))
        media = media.lower()
        if media.count("/") != 1:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = -1.0
        if 0.0 <= quality <= 1.0:
            # The first mention of a range counts, as most servers read it.
            ranges.setdefault(media, quality)

    def quality_of(media: str) -> float:
        kind = media.split("/")[0]
        for candidate in (media, f"{kind}/*", "*/*"):
            if candidate in ranges:
                return ranges[candidate]
        return 0.0

    return quality_of("text/html") > quality_of("application/json")


def install_page_errors(app: FastAPI) -> None:
    """Wraps each installed error handler so that web paths get an HTML page."""
    for exc_class, handler in list(app.exception_handlers.items()):
        if exc_class is WebSocketRequestValidationError:
            continue
        app.add_exception_handler(exc_class, _pages_get_html(handler))
    app.add_exception_handler(SignInRequired, _sign_in_required)


def _pages_get_html(api_handler: Handler) -> Handler:
    async def handler(request: Request, exc: Exception) -> Response:
        if is_page_path(request.url.path) or browser_lost(request, exc):
            return await error_page(request, exc)
        return await api_handler(request, exc)

    return handler


async def error_page(request: Request, exc: Exception) -> Response:
    status, title, message = _describe(request, exc)
    headers: dict[str, str] = {}
    if isinstance(exc, HTTPException | Throttled | Saturated):
        headers = dict(exc.headers or {})
    if status == 405:
        headers["Allow"] = allowed_methods(request)
    response = page(
        request,
        "error.html",
        viewer=await viewer_for_error(request, status),
        status=status,
        code=status,
        title=title,
        message=message,
    )
    response.headers.update(headers)
    return response


def allowed_methods(request: Request) -> str:
    """The methods the address takes, for ``Allow``: those of every route at its path.

    Starlette names only the first route that matched the path, and a page often has two,
    ``GET`` to show it and ``POST`` for its form. HEAD is answered wherever GET is.
    """
    path = request.scope["path"]
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(path):
            methods |= route.methods
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


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


async def viewer_for_error(request: Request, status: int) -> Viewer | None:
    """Who is signed in, for the layout of an error page.

    The operator a page read at its start, or, when the error came before any page read the
    session (an address no route knows, a method a route does not take, a body too large),
    the session is read now. Not for a 5xx: the database may be what failed. An error here
    costs the layout only, never the page.
    """
    read = getattr(request.state, "viewer", _UNREAD)
    if read is not _UNREAD:
        return read
    if status >= 500 or not session_id_of(request):
        return None
    try:
        return await run_in_threadpool(current_viewer, request)
    except Exception as exc:  # the error page is still shown, signed out
        log.warning(
            "session not read for an error page: %s", type(exc).__name__, extra=where(request)
        )
        return None


async def too_large_page(scope: Scope) -> bytes | None:
    """The 413 page for a web path whose request body was too large; None for the API.

    The body limit is enforced by middleware, before any page has read the session; it is
    read here, and only for a web path.
    """
    if not is_page_path(scope["path"]):
        return None
    status = 413
    text = render(
        "error.html",
        viewer=await viewer_for_error(Request(scope), status),
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
    url = "/signin" + (f"?{urlencode(query)}" if query else "")
    if not exc.session_ended:
        return redirect(url)
    response = redirect_with_notice(request, url, "session-ended")
    clear_session_cookie(response, request.app.state.settings)
    return response
