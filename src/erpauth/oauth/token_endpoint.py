"""The token endpoint (RFC 6749 §3.2)."""

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from erpauth.domain.audit import Origin
from erpauth.domain.tokens import IssuedAccessToken
from erpauth.http.openapi import CLIENT_AUTH_RESPONSES, json_error
from erpauth.http.origin import origin_of
from erpauth.oauth.client_auth import ClientCredentials, read_client_credentials
from erpauth.oauth.errors import InvalidRequest, UnsupportedGrantType
from erpauth.oauth.form import FORM_TYPE, form_schema, read_form
from erpauth.oauth.password_fast_path import password_grant_on_event_loop
from erpauth.oauth.password_grant import password_grant
from erpauth.oauth.refresh_fast_path import refresh_grant_on_event_loop
from erpauth.oauth.refresh_grant import refresh_token_grant
from erpauth.services import Services

TOKEN_PATH = "/authentication/v1/authentication/token"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

Grant = Callable[[Services, ClientCredentials, dict[str, str], Origin], IssuedAccessToken]
GRANTS: dict[str, Grant] = {"password": password_grant, "refresh_token": refresh_token_grant}
AsyncGrant = Callable[
    [Services, ClientCredentials, dict[str, str], Origin], Awaitable[IssuedAccessToken]
]
ON_EVENT_LOOP: dict[str, AsyncGrant] = {
    "password": password_grant_on_event_loop,
    "refresh_token": refresh_grant_on_event_loop,
}

router = APIRouter(tags=["Authentication"])

_FORM_FIELDS = {
    "grant_type": {
        "type": "string",
        "enum": ["password", "refresh_token"],
        "example": "password",
    },
    "username": {"type": "string", "description": "The operator's e-mail address."},
    "password": {"type": "string", "format": "password"},
    "refresh_token": {
        "type": "string",
        "description": "With `grant_type=refresh_token`: the refresh token to exchange.",
    },
    "scope": {"type": "string", "description": "Optional; `api` is the default and only scope."},
    "client_id": {"type": "string", "description": "Only when not sent with HTTP Basic."},
    "client_secret": {"type": "string", "format": "password"},
}
_TOKEN_RESPONSE = {
    "type": "object",
    "required": ["access_token", "token_type"],
    "properties": {
        "access_token": {"type": "string"},
        "token_type": {"type": "string", "enum": ["Bearer"]},
        "expires_in": {
            "type": "integer",
            "description": "Seconds until the token expires; absent when it never expires.",
        },
        "scope": {"type": "string"},
        "refresh_token": {
            "type": "string",
            "description": "Single use: exchange it at this endpoint for the next pair.",
        },
    },
}


@router.post(
    TOKEN_PATH,
    summary="Get an access token",
    description=(
        "OAuth 2.0 token endpoint. Authenticate the API client with its client_id and "
        "client_secret (HTTP Basic, or as form fields), and the operator with username "
        "(e-mail) and password, using `grant_type=password`. The answer carries a refresh "
        "token too; `grant_type=refresh_token` exchanges it for a new access token and a new "
        "refresh token."
    ),
    response_class=JSONResponse,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {FORM_TYPE: {"schema": form_schema(_FORM_FIELDS, ["grant_type"])}},
        },
        "responses": {
            "200": {
                "description": "The access token.",
                "content": {"application/json": {"schema": _TOKEN_RESPONSE}},
            },
            **CLIENT_AUTH_RESPONSES,
            "400": json_error("The request or the grant is not valid."),
        },
    },
)
async def token(request: Request) -> JSONResponse:
    form = await read_form(request)
    credentials = read_client_credentials(request.headers.get("authorization"), form)

    grant_type = form.get("grant_type")
    if grant_type is None:
        raise InvalidRequest("grant_type is missing")
    grant = GRANTS.get(grant_type)
    if grant is None:
        supported = ", ".join(sorted(GRANTS))
        raise UnsupportedGrantType(
            f"grant_type {grant_type[:40]!r} is not supported; use {supported}"
        )

    services: Services = request.app.state.services
    origin = origin_of(request)
    limits = services.abuse.requests
    # Most requests are counted from this process's leases; the rest may wait for Redis.
    uncounted = limits.admit_locally(limits.token_request_checks(origin, credentials.client_id))
    if uncounted:
        await run_in_threadpool(limits.enforce_all, uncounted, origin)
    if services.database.async_autocommit is not None:
        # PostgreSQL: the common grants run on the event loop (see refresh_fast_path and
        # password_fast_path), and fall back to the synchronous ones for the rest.
        issued = await ON_EVENT_LOOP[grant_type](services, credentials, form, origin)
    else:
        issued = await run_in_threadpool(grant, services, credentials, form, origin)
    return JSONResponse(token_response_body(issued), headers=NO_STORE)


def token_response_body(issued: IssuedAccessToken) -> dict[str, object]:
    body: dict[str, object] = {"access_token": issued.token, "token_type": "Bearer"}
    if issued.expires_in is not None:
        body["expires_in"] = issued.expires_in
    body["scope"] = issued.scope
    if issued.refresh_token is not None:
        body["refresh_token"] = issued.refresh_token
    return body
