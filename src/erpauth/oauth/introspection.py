"""The introspection endpoint (RFC 7662)."""

import logging
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from erpauth.domain.audit import Origin
from erpauth.domain.refresh_tokens import is_live
from erpauth.domain.revocation import find_token
from erpauth.domain.tokens import InvalidToken, TokenContext
from erpauth.http.openapi import CLIENT_AUTH_RESPONSES
from erpauth.http.origin import origin_of
from erpauth.oauth.client_auth import (
    ClientCredentials,
    authenticate_request_client,
    read_client_credentials,
)
from erpauth.oauth.errors import OAuthError
from erpauth.oauth.form import read_form
from erpauth.oauth.refresh_grant import standing_refusal
from erpauth.oauth.token_endpoint import NO_STORE
from erpauth.oauth.token_request import read_token_request, token_request_body
from erpauth.services import Services
from erpauth.storage.models import ApiClient, Company, Operator, RefreshToken

log = logging.getLogger("erpauth.oauth")

INTROSPECTION_PATH = "/authentication/v1/authentication/introspect"
INACTIVE: dict[str, Any] = {"active": False}

router = APIRouter(tags=["Authentication"])

_INTROSPECTION_RESPONSE = {
    "type": "object",
    "required": ["active"],
    "properties": {
        "active": {"type": "boolean"},
        "scope": {"type": "string"},
        "client_id": {"type": "string"},
        "username": {"type": "string", "description": "The operator's e-mail address."},
        "token_type": {"type": "string", "enum": ["Bearer"]},
        "exp": {"type": "integer"},
        "iat": {"type": "integer"},
        "nbf": {"type": "integer"},
        "sub": {"type": "string", "description": "The operator's id."},
        "aud": {"type": "string"},
        "iss": {"type": "string"},
        "jti": {"type": "string"},
        "company_id": {"type": "string"},
    },
}


@router.post(
    INTROSPECTION_PATH,
    summary="Check a token",
    description=(
        "OAuth 2.0 token introspection (RFC 7662). Authenticate the API client as at the token "
        "endpoint. A token is active only when it belongs to the client's own company and "
        'would be accepted right now; anything else is answered with `{"active": false}`.'
    ),
    openapi_extra={
        "requestBody": token_request_body("The access token or refresh token to check."),
        "responses": {
            "200": {
                "description": "Whether the token is active, and its claims when it is.",
                "content": {"application/json": {"schema": _INTROSPECTION_RESPONSE}},
            },
            **CLIENT_AUTH_RESPONSES,
        },
    },
)
async def introspect(request: Request) -> JSONResponse:
    form = await read_form(request)
    credentials = read_client_credentials(request.headers.get("authorization"), form)

    services: Services = request.app.state.services
    origin = origin_of(request)
    # Each request checks a client secret: it counts like a token request, or it would be
    # a free way to guess secrets.
    await run_in_threadpool(
        services.abuse.requests.check_token_request, origin, credentials.client_id
    )
    body = await run_in_threadpool(introspect_token, services, credentials, form, origin)
    return JSONResponse(body, headers=NO_STORE)


def introspect_token(
    services: Services, credentials: ClientCredentials, form: dict[str, str], origin: Origin
) -> dict[str, Any]:
    with services.database.session() as session:
        client = authenticate_request_client(
            session, services, credentials, "token.introspect", origin
        )
        outcome = client if isinstance(client, OAuthError) else _look_up(session, client, form)
    if isinstance(outcome, OAuthError):
        raise outcome
    if isinstance(outcome, dict):
        return outcome

    # An access token of the client's company: the same checks as on a protected request.
    try:
        context = services.tokens.authenticate(outcome)
    except InvalidToken as exc:
        log.debug("introspected access token is inactive: %s", exc)
        return INACTIVE
    return _access_token_claims(services, context)


def _look_up(session: Session, client: ApiClient, form: dict[str, str]) -> dict[str, Any] | str:
    """The answer for a refresh token, or the access token still to be checked."""
    request = read_token_request(form)
    found = find_token(session, request.token, request.hint)
    if found is None or found.company_id != client.company_id:
        return INACTIVE
    if found.access is not None:
        return request.token
    assert found.refresh is not None
    return _refresh_token_claims(session, client, found.refresh)


def _access_token_claims(services: Services, context: TokenContext) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "active": True,
        "scope": context.scope,
        "client_id": context.client_id,
        "username": context.email,
        "token_type": "Bearer",
        "iat": _epoch(context.issued_at),
        "nbf": _epoch(context.issued_at),
        "sub": str(context.operator_id),
        "aud": services.settings.audience,
        "iss": services.settings.issuer,
        "jti": context.jti,
        "company_id": str(context.company_id),
    }
    if context.expires_at is not None:
        claims["exp"] = _epoch(context.expires_at)
    return claims


def _refresh_token_claims(
    session: Session, client: ApiClient, record: RefreshToken
) -> dict[str, Any]:
    operator = session.get(Operator, record.operator_id)
    company = session.get(Company, client.company_id)
    if not is_live(record) or company is None:
        return INACTIVE
    if standing_refusal(operator, company, record) is not None:
        return INACTIVE
    assert operator is not None
    return {
        "active": True,
        "scope": record.scope,
        "client_id": record.client_id,
        "username": operator.email,
        "iat": _epoch(record.issued_at),
        "exp": _epoch(record.expires_at),
        "sub": str(operator.id),
        "company_id": str(company.id),
    }


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())
