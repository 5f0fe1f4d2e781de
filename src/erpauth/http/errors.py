"""The one place where errors become HTTP responses: always JSON, never a traceback."""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Route

from erpauth.abuse.errors import Saturated, Throttled
from erpauth.domain.errors import Conflict, DomainError, NotFound
from erpauth.oauth.errors import OAuthError

log = logging.getLogger("erpauth.http")

_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
}


def error_response(
    status: int, error: str, description: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


async def _oauth_error(_request: Request, exc: OAuthError) -> JSONResponse:
    return JSONResponse(
        exc.body(),
        status_code=exc.status_code,
        headers={"Cache-Control": "no-store", "Pragma": "no-cache", **exc.headers},
    )


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    code = _HTTP_CODES.get(exc.status_code, "error")
    description = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        description = _not_found_hint(request) or "there is nothing at this address"
    elif exc.status_code == 405 and headers.get("Allow"):
        description = f"this address does not answer {request.method}; use {headers['Allow']}"
    return error_response(exc.status_code, code, description, headers)


def _not_found_hint(request: Request) -> str | None:
    """For an address that only a trailing slash keeps from a route: what to send instead.

    Starlette's redirect to the address without the slash is turned off (see ``create_app``),
    so the caller is told rather than sent elsewhere.
    """
    path = request.url.path
    bare = path.rstrip("/")
    if not bare or bare == path:
        return None
    for route in request.app.router.routes:
        if isinstance(route, Route) and (
            route.path_regex.match(bare) or route.path.lower() == bare.lower()
        ):
            return f"there is nothing at this address; use {bare}, without the trailing slash"
    return None


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        problems.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg"))
    return error_response(400, "invalid_request", "; ".join(map(str, problems)) or "invalid input")


async def _domain_error(_request: Request, exc: DomainError) -> JSONResponse:
    if isinstance(exc, NotFound):
        return error_response(404, "not_found", str(exc))
    if isinstance(exc, Conflict):
        return error_response(409, "conflict", str(exc))
    return error_response(400, "invalid_request", str(exc))


async def _throttled(_request: Request, exc: Throttled) -> JSONResponse:
    return JSONResponse(
        {
            "error": "too_many_requests",
            "error_description": exc.description,
            "limit": exc.limit,
            "retry_after": exc.retry_after,
        },
        status_code=429,
        headers={"Cache-Control": "no-store", **exc.headers},
    )


async def _saturated(_request: Request, exc: Saturated) -> JSONResponse:
    return error_response(503, "temporarily_unavailable", exc.description, exc.headers)


async def _client_gone(request: Request, _exc: ClientDisconnect) -> JSONResponse:
    # The client hung up, or the server closed a request whose body was too slow to arrive;
    # no one is left to answer.
    log.info("client disconnected", extra=where(request))
    return error_response(400, "invalid_request", "the client disconnected")


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.error("database unavailable: %s", type(exc).__name__, extra=where(request))
    return error_response(
        503,
        "temporarily_unavailable",
        "the service cannot reach its database right now; try again shortly",
        {"Retry-After": "5"},
    )


def where(request: Request) -> dict[str, dict[str, str]]:
    """The request's method and path as log fields: quoted there, never part of the message.

    A path can hold anything a caller types, ``outcome=success`` included; in a field it
    cannot pass for one of the line's own.
    """
    return {"fields": {"method": request.method, "path": request.url.path}}


def database_unreachable(exc: BaseException) -> bool:
    """True for errors that mean the database cannot be reached, not that a statement failed."""
    if isinstance(exc, PoolTimeout | OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


async def _database_error(request: Request, exc: DBAPIError) -> JSONResponse:
    if database_unreachable(exc):
        return await _database_unavailable(request, exc)
    if isinstance(exc, DataError):
        log.info("value refused by the database", extra=where(request))
        return error_response(
            400, "invalid_request", "the request holds a value that cannot be stored"
        )
    return await _unexpected(request, exc)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", extra=where(request))
    return error_response(500, "server_error", "something went wrong on our side; it is logged")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OAuthError, _oauth_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(Throttled, _throttled)
    app.add_exception_handler(Saturated, _saturated)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(PoolTimeout, _database_unavailable)
    app.add_exception_handler(InterfaceError, _database_unavailable)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(Exception, _unexpected)
