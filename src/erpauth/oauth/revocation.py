"""The revocation endpoint (RFC 7009)."""

import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from erpauth.domain import audit
from erpauth.domain.audit import Origin
from erpauth.domain.revocation import find_token, revoke_found
from erpauth.http.openapi import CLIENT_AUTH_RESPONSES
from erpauth.http.origin import origin_of
from erpauth.oauth.client_auth import (
    ClientCredentials,
    authenticate_request_client,
    read_client_credentials,
)
from erpauth.oauth.errors import OAuthError
from erpauth.oauth.form import read_form
from erpauth.oauth.token_endpoint import NO_STORE
from erpauth.oauth.token_request import read_token_request, token_request_body
from erpauth.services import Services

log = logging.getLogger("erpauth.oauth")

REVOCATION_PATH = "/authentication/v1/authentication/revoke"

router = APIRouter(tags=["Authentication"])


@router.post(
    REVOCATION_PATH,
    summary="Revoke a token",
    description=(
        "OAuth 2.0 token revocation (RFC 7009). Authenticate the API client as at the token "
        "endpoint. Revoking a refresh token also revokes every access token issued with it. "
        "The answer is 200 whether or not the token was known, so it reveals nothing about "
        "tokens the client does not hold."
    ),
    response_class=Response,
    openapi_extra={
        "requestBody": token_request_body("The access token or refresh token to revoke."),
        "responses": {
            "200": {"description": "The token is revoked, or was never valid."},
            **CLIENT_AUTH_RESPONSES,
        },
    },
)
async def revoke(request: Request) -> Response:
    form = await read_form(request)
    credentials = read_client_credentials(request.headers.get("authorization"), form)

    services: Services = request.app.state.services
    origin = origin_of(request)
    # Each request checks a client secret: it counts like a token request, or it would be
    # a free way to guess secrets.
    await run_in_threadpool(
        services.abuse.requests.check_token_request, origin, credentials.client_id
    )
    await run_in_threadpool(revoke_token, services, credentials, form, origin)
    return Response(status_code=200, headers=NO_STORE)


def revoke_token(
    services: Services, credentials: ClientCredentials, form: dict[str, str], origin: Origin
) -> None:
    with services.database.session() as session:
        outcome = _revoke(session, services, credentials, form, origin)
    if outcome is not None:
        raise outcome


def _revoke(
    session: Session,
    services: Services,
    credentials: ClientCredentials,
    form: dict[str, str],
    origin: Origin,
) -> OAuthError | None:
    client = authenticate_request_client(session, services, credentials, "token.revoke", origin)
    if isinstance(client, OAuthError):
        return client
    request = read_token_request(form)

    found = find_token(session, request.token, request.hint)
    if found is None:
        log.debug("revocation of an unknown token", extra={"fields": {"client": client.client_id}})
        return None
    record = found.access or found.refresh
    assert record is not None
    ids = {
        "company_id": record.company_id,
        "operator_id": record.operator_id,
        "client_id": client.client_id,
    }
    if found.company_id != client.company_id:
        # RFC 7009 would refuse; answering 200 instead tells the client nothing about the token.
        audit.record(session, "token.revoke", "refused", origin, reason="other_company", **ids)
        return None

    revoked = revoke_found(session, found, "revoked_by_client")
    audit.record(
        session,
        "token.revoke",
        "success",
        origin,
        token_type=found.kind,
        jti=found.access.jti if found.access else None,
        family_id=found.refresh.family_id if found.refresh else None,
        refresh_tokens_revoked=revoked.refresh_tokens,
        access_tokens_revoked=revoked.access_tokens,
        **ids,
    )
    return None
