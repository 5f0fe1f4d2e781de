"""Bearer token usage on protected resources (RFC 6750 §2.1)."""

import logging

from fastapi import Request, Response, Security
from fastapi.security import OAuth2PasswordBearer
from starlette.concurrency import run_in_threadpool

from erpauth.domain.tokens import InvalidToken as TokenRefused
from erpauth.domain.tokens import TokenContext
from erpauth.http.origin import origin_of
from erpauth.oauth.errors import InvalidToken, MalformedAuthorization, MissingToken
from erpauth.oauth.token_endpoint import TOKEN_PATH
from erpauth.services import Services

log = logging.getLogger("erpauth.oauth")

REALM = "erpauth"
MAX_TOKEN_LENGTH = 4096

# Declares the OAuth2 password flow in the OpenAPI document, which gives Swagger UI its
# Authorize button. The checking itself is done by `bearer_token` below.
oauth2_scheme = OAuth2PasswordBearer(
    tokenUrl=TOKEN_PATH,
    scheme_name="OAuth2",
    auto_error=False,
    scopes={"api": "Call the company's API as the signed-in operator (the default)."},
    description=(
        "Sign in with an operator's e-mail and password and the company's API client "
        "credentials (client_id and client_secret, from System Settings → API). The client "
        "credentials may travel in the Authorization header or in the request body."
    ),
)


async def bearer_token(
    request: Request, response: Response, _declared: str | None = Security(oauth2_scheme)
) -> TokenContext:
    """The context of the request's access token; refuses the request without a valid one."""
    # Whatever the answer, it is about the token's operator: no cache may keep a copy.
    response.headers["Cache-Control"] = "no-store"
    header = request.headers.get("authorization")
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

    services: Services = request.app.state.services
    try:
        if services.database.async_autocommit is not None:
            context = await services.tokens.authenticate_async(token)
        else:
            context = await run_in_threadpool(services.tokens.authenticate, token)
    except TokenRefused as exc:
        log.info("bearer token refused: %s", exc, extra={"fields": {"path": request.url.path}})
        raise InvalidToken(str(exc), REALM) from exc

    request.state.token = context
    # Counted after the token check: a request without a valid token is no company's call.
    calls, origin = services.abuse.calls, origin_of(request)
    if services.abuse.store.shared:
        # Redis may be slow or gone (then up to its timeout): never on the event loop.
        request.state.rate_limit = await run_in_threadpool(calls.hit, context, origin)
    else:
        request.state.rate_limit = calls.hit(context, origin)
    return context
