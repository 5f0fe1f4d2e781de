"""Refreshing an access token (RFC 6749 §6), with rotation and reuse detection (RFC 9700)."""

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session

from erpauth.domain import audit
from erpauth.domain.audit import Origin
from erpauth.domain.refresh_tokens import (
    RefreshTokenState,
    claim,
    find_for_refresh,
    issue_token_pair,
    revoke_family,
)
from erpauth.domain.tokens import IssuedAccessToken
from erpauth.oauth.client_auth import (
    ClientCredentials,
    authenticate_request_client,
    check_client_secret,
)
from erpauth.oauth.errors import InvalidGrant, InvalidRequest, InvalidScope, OAuthError
from erpauth.oauth.password_grant import DEACTIVATED, LICENSE_CLOSED, NO_PERMISSION
from erpauth.oauth.scope import parse_scope
from erpauth.services import Services
from erpauth.storage.models import ApiClient, RefreshToken

log = logging.getLogger("erpauth.oauth")

MAX_REFRESH_TOKEN_LENGTH = 512
NOT_VALID = "the refresh token is not valid"
REVOKED = "the refresh token has been revoked; sign in again"
EXPIRED = "the refresh token has expired; sign in again"
REUSED = (
    "the refresh token was already used; every token issued from it is now revoked, sign in again"
)
PASSWORD_CHANGED = "the operator's password has changed since this refresh token was issued"


def refresh_token_grant(
    services: Services,
    credentials: ClientCredentials,
    form: dict[str, str],
    origin: Origin,
    *,
    claim_lost: bool = False,
) -> IssuedAccessToken:
    """The grant in a session of its own, for a worker thread.

    ``claim_lost``: the fast path (refresh_fast_path) read this token unused, then lost the
    claim to another request; a used token found now is then a concurrent reuse.
    """
    presented = form.get("refresh_token")
    if not presented:
        raise InvalidRequest("the refresh_token grant needs the refresh_token parameter")
    requested_scope = parse_scope(form["scope"]) if "scope" in form else None

    with services.database.session() as session:
        outcome = _refresh(
            session, services, credentials, presented, requested_scope, origin, claim_lost
        )
    if isinstance(outcome, OAuthError):
        raise outcome
    return outcome


def _refresh(
    session: Session,
    services: Services,
    credentials: ClientCredentials,
    presented: str,
    requested_scope: str | None,
    origin: Origin,
    claim_lost: bool,
) -> IssuedAccessToken | OAuthError:
    found = None
    if len(presented) <= MAX_REFRESH_TOKEN_LENGTH:
        found = find_for_refresh(session, credentials.client_id, presented)
    if found is None:
        return _unknown_client_or_token(session, services, credentials, origin)

    client, company, record, operator = found.client, found.company, found.record, found.operator
    refused = check_client_secret(session, services, credentials, client, "token.refresh", origin)
    if refused is not None:
        return refused

    ids = {
        "company_id": record.company_id,
        "operator_id": record.operator_id,
        "client_id": client.client_id,
        "family_id": record.family_id,
    }
    refusal = _token_refusal(session, record, client, origin, ids, claim_lost)
    if refusal is not None:
        return refusal

    scope = narrowed_scope(record.scope, requested_scope)
    if scope is None:
        return InvalidScope("the requested scope is wider than the one originally granted")

    # The operator was read under a share lock (see find_for_refresh): a password change or
    # deactivation either shows here or waits for this commit, whose tokens it then revokes.
    standing = standing_refusal(operator, company, record)
    if standing is not None:
        audit.record(session, "token.refresh", "refused", origin, reason=standing[0], **ids)
        return InvalidGrant(standing[1])

    if not claim(session, record):
        # Another request used or revoked this token between our read and our write.
        return _reuse_detected(session, record, origin, ids, concurrent=True)

    issued = issue_token_pair(
        session,
        services.tokens,
        operator,
        company,
        client,
        source="refresh",
        scope=scope,
        origin=origin,
        family_id=record.family_id,
        refresh_ttl=timedelta(hours=services.settings.refresh_token_ttl_hours),
    )
    audit.record_row(session, success_event(origin, client.client_id, record, issued.jti), origin)
    return issued


def success_event(
    origin: Origin, client_id: str, record: RefreshTokenState, jti: str
) -> dict[str, Any]:
    """The audit row of a successful refresh, the same whichever path made it."""
    return audit.event_row(
        "token.refresh",
        "success",
        origin,
        company_id=record.company_id,
        operator_id=record.operator_id,
        client_id=client_id,
        detail={"jti": jti, "used_id": record.id, "family_id": record.family_id},
    )


def _unknown_client_or_token(
    session: Session, services: Services, credentials: ClientCredentials, origin: Origin
) -> OAuthError:
    """The answer when the joined read found nothing: a wrong client, else an unknown token."""
    client = authenticate_request_client(session, services, credentials, "token.refresh", origin)
    if isinstance(client, OAuthError):
        return client
    audit.record(
        session,
        "token.refresh",
        "refused",
        origin,
        company_id=client.company_id,
        client_id=client.client_id,
        reason="unknown_refresh_token",
    )
    return InvalidGrant(NOT_VALID)


def _token_refusal(
    session: Session,
    record: RefreshToken,
    client: ApiClient,
    origin: Origin,
    ids: dict[str, object],
    claim_lost: bool,
) -> OAuthError | None:
    """Refuses a refresh token that is not this client's, or no longer usable."""
    if record.client_id != client.client_id:
        audit.record(session, "token.refresh", "refused", origin, reason="other_client", **ids)
        return InvalidGrant(NOT_VALID)
    if record.revoked_at is not None:
        audit.record(session, "token.refresh", "refused", origin, reason="revoked", **ids)
        return InvalidGrant(REVOKED)
    if record.used_at is not None:
        return _reuse_detected(session, record, origin, ids, concurrent=claim_lost)
    if record.expires_at <= datetime.now(UTC):
        audit.record(session, "token.refresh", "refused", origin, reason="expired", **ids)
        return InvalidGrant(EXPIRED)
    return None


def _reuse_detected(
    session: Session,
    record: RefreshToken,
    origin: Origin,
    ids: dict[str, object],
    *,
    concurrent: bool,
) -> OAuthError:
    revoked = revoke_family(session, record.family_id, "refresh_token_reused")
    audit.record(
        session,
        "token.reuse",
        "family_revoked",
        origin,
        reused_id=record.id,
        concurrent=concurrent,
        refresh_tokens_revoked=revoked.refresh_tokens,
        access_tokens_revoked=revoked.access_tokens,
        **ids,
    )
    return InvalidGrant(REUSED)


def narrowed_scope(granted: str, requested: str | None) -> str | None:
    """The scope of the new tokens; None when the request asks for more than was granted.

    RFC 6749 §6: a refresh may narrow the scope, never widen it.
    """
    if requested is None:
        return granted
    return requested if set(requested.split()) <= set(granted.split()) else None


class OperatorStanding(Protocol):
    """What the standing check reads of an operator: an Operator, or a row read without the ORM."""

    company_id: uuid.UUID
    is_active: bool
    api_permission: bool
    password_changed_at: datetime


class CompanyStanding(Protocol):
    """What the standing check reads of a company: a Company, or a row read without the ORM."""

    id: uuid.UUID
    api_enabled: bool


def standing_refusal(
    operator: OperatorStanding | None, company: CompanyStanding, record: RefreshTokenState
) -> tuple[str, str] | None:
    """Why a password grant would be refused now, as (reason for the log, description)."""
    if operator is None or operator.company_id != company.id or record.company_id != company.id:
        return "operator_gone", NOT_VALID
    if not company.api_enabled:
        return "license_api_disabled", LICENSE_CLOSED
    if not operator.is_active:
        return "operator_inactive", DEACTIVATED
    if not operator.api_permission:
        return "no_api_permission", NO_PERMISSION
    if operator.password_changed_at > record.issued_at:
        return "password_changed", PASSWORD_CHANGED
    return None
