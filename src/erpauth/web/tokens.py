"""The access tokens issued to an operator, listed and revoked one by one.

Operators see their own on User Settings → Sessions; System Administrators see any operator's
of their company from the Users page. A token is never shown, only its last characters.
"""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response

from erpauth.domain import audit
from erpauth.domain.sessions import TokenSummary, company_operator, list_tokens, revoke_token
from erpauth.http.origin import origin_of
from erpauth.web.access import AdminForm, CheckedForm, SignedIn, SystemAdmin, Viewer, services_of
from erpauth.web.render import page, redirect_with_notice

router = APIRouter(include_in_schema=False)

SESSIONS_TAB = "/settings/user/sessions"

# Where a token was made, in the words of the pages.
SOURCES = {
    "web": "User Settings → API",
    "token_endpoint": "Token endpoint",
    "refresh": "Token refresh",
}


@dataclass(frozen=True)
class TokenRow:
    """One token as a row of the list."""

    jti: str
    hint: str
    made_by: str
    issued_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    expired: bool
    refreshable_until: datetime | None
    ip_address: str | None
    user_agent: str | None


@router.get(SESSIONS_TAB)
def sessions_tab(request: Request, viewer: SignedIn) -> Response:
    services = services_of(request)
    with services.database.session() as session:
        rows = _rows(list_tokens(session, viewer.operator_id))
    return page(
        request,
        "user_sessions.html",
        viewer=viewer,
        active="user-settings",
        tab="sessions",
        tokens=rows,
        revoke_base=SESSIONS_TAB,
    )


@router.post(SESSIONS_TAB + "/{jti}/revoke")
def revoke_own_token(request: Request, viewer: CheckedForm, jti: str) -> Response:
    revoked = _revoke(request, viewer, viewer.operator_id, jti, "revoked_by_operator")
    notice = "token-revoked" if revoked else "token-gone"
    return redirect_with_notice(request, SESSIONS_TAB, notice)


@router.get("/users/{operator_id}/tokens")
def operator_tokens(request: Request, viewer: SystemAdmin, operator_id: str) -> Response:
    services = services_of(request)
    with services.database.session() as session:
        operator = company_operator(session, viewer.company_id, operator_id)
        rows = _rows(list_tokens(session, operator.id))
        subject = {
            "id": operator.id,
            "email": operator.email,
            "display_name": operator.display_name,
            "is_self": operator.id == viewer.operator_id,
        }
    return page(
        request,
        "operator_tokens.html",
        viewer=viewer,
        active="users",
        subject=subject,
        tokens=rows,
        revoke_base=f"/users/{subject['id']}/tokens",
    )


@router.post("/users/{operator_id}/tokens/{jti}/revoke")
def revoke_operator_token(
    request: Request, viewer: AdminForm, operator_id: str, jti: str
) -> Response:
    services = services_of(request)
    with services.database.session() as session:
        subject = company_operator(session, viewer.company_id, operator_id).id
    revoked = _revoke(request, viewer, subject, jti, "revoked_by_administrator")
    notice = "token-revoked" if revoked else "token-gone"
    return redirect_with_notice(request, f"/users/{subject}/tokens", notice)


def _revoke(
    request: Request, viewer: Viewer, operator_id: uuid.UUID, jti: str, reason: str
) -> bool:
    """Revokes the operator's token and its refresh family; False when it was revoked before.

    A token that is not the operator's is, to this page, no token at all (NotFound).
    """
    services = services_of(request)
    with services.database.session() as session:
        revoked = revoke_token(session, operator_id, jti[:64], reason)
        if not (revoked.access_tokens or revoked.refresh_tokens):
            return False
        audit.record(
            session,
            "token.revoke",
            "success",
            origin_of(request),
            company_id=viewer.company_id,
            actor_id=viewer.operator_id,
            operator_id=operator_id,
            via="web",
            jti=jti,
            reason=reason,
            access_tokens_revoked=revoked.access_tokens,
            refresh_tokens_revoked=revoked.refresh_tokens,
        )
    return True


def _rows(summaries: list[TokenSummary]) -> list[TokenRow]:
    now = datetime.now(UTC)
    return [
        TokenRow(
            jti=summary.jti,
            hint=summary.hint,
            made_by=SOURCES.get(summary.source, summary.source),
            issued_at=summary.issued_at,
            last_used_at=summary.last_used_at,
            expires_at=summary.expires_at,
            expired=summary.expires_at is not None and summary.expires_at <= now,
            refreshable_until=summary.refreshable_until,
            ip_address=summary.ip_address,
            user_agent=summary.user_agent,
        )
        for summary in summaries
    ]
