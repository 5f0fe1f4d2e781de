"""Bearer token usage on protected resources (RFC 6750 §2.1)."""

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.routing import APIRoute
from fastapi.security import OAuth2PasswordBearer
from starlette.concurrency import run_in_threadpool

from erpauth.domain.tokens import InvalidToken as TokenRefused
from erpauth.domain.tokens import TokenContext
from erpauth.http.errors import where
from erpauth.http.origin import origin_of
from erpauth.oauth.errors import InvalidToken, MalformedAuthorization, MissingToken
from erpauth.oauth.token_endpoint import TOKEN_PATH
from erpauth.services import Services

log = logging.getLogger("erpauth.oauth")

REALM = "erpauth"
SCHEME = "OAuth2"
MAX_TOKEN_LENGTH = 4096

# The OAuth2 password flow of the OpenAPI document, which gives Swagger UI its Authorize
# button. Declared by ``document_security``, not as a FastAPI dependency: resolving a
# dependency on every API request would cost more than the rest of the bearer check.
oauth2_scheme = OAuth2PasswordBearer(
    tokenUrl=TOKEN_PATH,
    scheme_name=SCHEME,
    auto_error=False,
    scopes={"api": "Call the company's API as the signed-in operator (the default)."},
    description=(
        "Sign in with an operator's e-mail and password and the company's API client "
        "credentials (client_id and client_secret, from System Settings → API). The client "
        "credentials may travel in the Authorization header or in the request body."
    ),
)


class BearerRoute(APIRoute):
    """An API route that serves only requests with a valid access token.

    The token is checked before FastAPI resolves the endpoint's parameters, so a request
    without one learns nothing else (401, not a validation error), and the check costs no
    dependency resolution. The endpoint reads the token's context with ``caller(request)``.
    Use it as an ``APIRouter``'s ``route_class``.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        # The operation's security requirement in the OpenAPI document (Swagger UI then sends
        # the token it got through Authorize).
        extra = dict(kwargs.get("openapi_extra") or {})
        extra.setdefault("security", [{SCHEME: []}])
        kwargs["openapi_extra"] = extra
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def checked(request: Request) -> Response:
            await authenticate(request)
            return await handle(request)

        return checked


def caller(request: Request) -> TokenContext:
    """The context of the access token that a ``BearerRoute`` checked for this request."""
    context: TokenContext = request.state.token
    return context


async def authenticate(request: Request) -> TokenContext:
    """The context of the request's access token; refuses the request without a valid one.

    Whatever the answer, it is about the token's operator: ``BearerResponseHeaders`` marks it
    ``Cache-Control: no-store`` and adds the call-limit usage left in the request state.
    Runs on every API call, so it reads the scope directly rather than through ``Request``.
    """
    scope = request.scope
    header = _authorization(scope["headers"])
    if not header:
        raise MissingToken(
            "this API needs an access token: send Authorization: Bearer <token>", REALM
        )

    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise MalformedAuthorization("the Authorization header must be 'Bearer <token>'", REALM)
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("the access token is invalid", REALM)

    services: Services = scope["app"].state.services
    try:
        if services.database.async_autocommit is not None:
            context = await services.tokens.authenticate_async(token)
        else:
            context = await run_in_threadpool(services.tokens.authenticate, token)
    except TokenRefused as exc:
        log.info("bearer token refused: %s", exc, extra=where(request))
        raise InvalidToken(str(exc), REALM) from exc

    # What request.state shows, written without building its wrapper on this hot path.
    state = scope.setdefault("state", {})
    state["token"] = context
    # Counted after the token check: a request without a valid token is no company's call.
    calls = services.abuse.calls
    # Mostly from this process's lease, without a coroutine; hit_async when it has no call.
    usage = calls.hit_locally(context)
    if usage is None:
        usage = await calls.hit_async(context)
    state["rate_limit"] = usage
    if usage is not None and not usage.allowed:
        # The refusal is audited (once per window), which may wait for the database.
        raise await run_in_threadpool(calls.refusal, context, usage, origin_of(request))
    return context


def _authorization(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The Authorization header's value (the first, if sent twice), as Starlette decodes it."""
    for name, value in headers:
        if name == b"authorization":
            return value.decode("latin-1")
    return None


def document_security(app: FastAPI, document: dict[str, Any]) -> None:
    """Declares the OAuth2 scheme that every ``BearerRoute`` operation requires."""
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})[SCHEME] = jsonable_encoder(
        oauth2_scheme.model, by_alias=True, exclude_none=True
    )
