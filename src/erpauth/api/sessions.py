"""Sessions: the tokens issued to an operator, listed and revoked over the API."""

import uuid
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from erpauth.domain import audit
from erpauth.domain.sessions import TokenSummary, company_operator, list_tokens, revoke_token
from erpauth.domain.tokens import TokenContext
from erpauth.http.openapi import BEARER_RESPONSES, json_error
from erpauth.http.origin import origin_of
from erpauth.oauth.bearer import BearerRoute, caller
from erpauth.services import Services

router = APIRouter(prefix="/authentication/v1", tags=["Sessions"], route_class=BearerRoute)

PRIVATE = {"Cache-Control": "no-store"}

_NO_SUCH_TOKEN = {"404": json_error("No such token among the operator's.")}
_ADMINS_ONLY = {
    "403": json_error("The caller is not a System Administrator."),
    "404": json_error("No such operator in the caller's company, or no such token of theirs."),
}


class TokenOut(BaseModel):
    jti: str
    source: str
    client_id: str
    scope: str
    issued_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    refreshable_until: datetime | None
    ip_address: str | None
    user_agent: str | None
    hint: str
    current: bool


class TokenListOut(BaseModel):
    operator_id: uuid.UUID
    tokens: list[TokenOut]


@router.get(
    "/tokens",
    summary="My tokens",
    description=(
        "The access tokens issued to the calling operator that still work or can still be "
        "refreshed: where and when each was made, when it was last used and when it expires. "
        "`hint` is the token's last characters; the token itself is never shown."
    ),
    response_model=TokenListOut,
    responses=BEARER_RESPONSES,
)
def my_tokens(request: Request) -> Response:
    token = caller(request)
    return _list(request, token, token.operator_id)


@router.delete(
    "/tokens/{jti}",
    summary="Revoke one of my tokens",
    description="Revokes the token, and its refresh token when it has one.",
    status_code=204,
    responses={**BEARER_RESPONSES, **_NO_SUCH_TOKEN},
)
def revoke_my_token(jti: str, request: Request) -> Response:
    token = caller(request)
    return _revoke(request, token, token.operator_id, jti)


@router.get(
    "/operators/{operator_id}/tokens",
    summary="An operator's tokens (System Administrators)",
    description="Like `GET /tokens`, for any operator of the administrator's company.",
    response_model=TokenListOut,
    responses={**BEARER_RESPONSES, **_ADMINS_ONLY},
)
def operator_tokens(operator_id: str, request: Request) -> Response:
    token = caller(request)
    return _list(request, token, _administered_operator(request, token, operator_id))


@router.delete(
    "/operators/{operator_id}/tokens/{jti}",
    summary="Revoke an operator's token (System Administrators)",
    description="Like `DELETE /tokens/{jti}`, for any operator of the administrator's company.",
    status_code=204,
    responses={**BEARER_RESPONSES, **_ADMINS_ONLY},
)
def revoke_operator_token(operator_id: str, jti: str, request: Request) -> Response:
    token = caller(request)
    return _revoke(request, token, _administered_operator(request, token, operator_id), jti)


def _administered_operator(request: Request, token: TokenContext, operator_id: str) -> uuid.UUID:
    if not token.is_system_admin:
        raise HTTPException(403, "only a System Administrator may manage other operators' tokens")
    services: Services = request.app.state.services
    with services.database.session() as session:
        return company_operator(session, token.company_id, operator_id).id


def _list(request: Request, token: TokenContext, operator_id: uuid.UUID) -> Response:
    services: Services = request.app.state.services
    with services.database.session() as session:
        summaries = list_tokens(session, operator_id)
    body = TokenListOut(
        operator_id=operator_id,
        tokens=[_token_out(summary, token.jti) for summary in summaries],
    )
    return Response(body.model_dump_json(), media_type="application/json", headers=PRIVATE)


def _revoke(request: Request, token: TokenContext, operator_id: uuid.UUID, jti: str) -> Response:
    services: Services = request.app.state.services
    with services.database.session() as session:
        revoked = revoke_token(session, operator_id, jti, "revoked_by_operator")
        audit.record(
            session,
            "token.revoke",
            "success",
            origin_of(request),
            company_id=token.company_id,
            actor_id=token.operator_id,
            operator_id=operator_id,
            client_id=token.client_id,
            via="sessions_api",
            jti=jti,
            refresh_tokens_revoked=revoked.refresh_tokens,
            access_tokens_revoked=revoked.access_tokens,
        )
    return Response(status_code=204, headers=PRIVATE)


def _token_out(summary: TokenSummary, current_jti: str) -> TokenOut:
    return TokenOut(
        jti=summary.jti,
        source=summary.source,
        client_id=summary.client_id,
        scope=summary.scope,
        issued_at=summary.issued_at,
        last_used_at=summary.last_used_at,
        expires_at=summary.expires_at,
        refreshable_until=summary.refreshable_until,
        ip_address=summary.ip_address,
        user_agent=summary.user_agent,
        hint=summary.hint,
        current=summary.jti == current_jti,
    )
