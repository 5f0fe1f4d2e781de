"""An operator's sessions: the tokens issued to them, listed and revoked one by one or all.

Used by the sessions API and by the User Settings and Users pages alike. A token that came
with a refresh token stands for the whole session it started: revoking it revokes its
refresh family too, or the client would simply refresh its way back in.
"""

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, Exists, distinct, exists, func, or_, select
from sqlalchemy.orm import Session

from erpauth.domain.errors import NotFound
from erpauth.domain.refresh_tokens import (
    RevokedCounts,
    revoke_family,
    revoke_operator_refresh_tokens,
)
from erpauth.domain.tokens import revoke_access_token, revoke_operator_tokens
from erpauth.storage.models import AccessToken, Operator, RefreshToken

# Token ids are URL-safe base64 (``secrets.token_urlsafe``) and fit their 64-character column.
_TOKEN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class TokenSummary:
    """What a person may see of a token: never the token, only its last characters."""

    jti: str
    source: str
    client_id: str
    scope: str
    issued_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    ip_address: str | None
    user_agent: str | None
    hint: str
    # Until when the session can be renewed with its refresh token; None when it cannot.
    refreshable_until: datetime | None


def list_tokens(session: Session, operator_id: uuid.UUID) -> list[TokenSummary]:
    """The operator's sessions, newest first.

    Every unexpired, unrevoked access token is listed. A session whose access token has
    expired but whose refresh token still works is listed by its newest access token.
    """
    now = datetime.now(UTC)
    live_families = _live_refresh_families(session, operator_id, now)
    rows = session.scalars(
        select(AccessToken)
        .where(
            AccessToken.operator_id == operator_id,
            AccessToken.revoked_at.is_(None),
            or_(
                AccessToken.expires_at.is_(None),
                AccessToken.expires_at > now,
                AccessToken.refresh_family_id.in_(live_families),
            ),
        )
        .order_by(AccessToken.issued_at.desc(), AccessToken.jti)
    ).all()

    def unexpired(row: AccessToken) -> bool:
        return row.expires_at is None or row.expires_at > now

    shown_families = {row.refresh_family_id for row in rows if unexpired(row)}
    listed = []
    for row in rows:
        if not unexpired(row):
            if row.refresh_family_id in shown_families:
                continue
            shown_families.add(row.refresh_family_id)
        listed.append(_summary(row, live_families.get(row.refresh_family_id or "")))
    return listed


def count_sessions(session: Session, company_id: uuid.UUID) -> dict[uuid.UUID, int]:
    """How many sessions ``list_tokens`` would list for each operator of the company.

    Two grouped queries for the whole company, however many operators and tokens it has:
    the unexpired access tokens, and the sessions that only a live refresh token keeps (all
    of their access tokens expired, none revoked).
    """
    now = datetime.now(UTC)
    unexpired = or_(AccessToken.expires_at.is_(None), AccessToken.expires_at > now)
    counts: dict[uuid.UUID, int] = dict(
        session.execute(
            select(AccessToken.operator_id, func.count())
            .where(
                AccessToken.company_id == company_id,
                AccessToken.revoked_at.is_(None),
                unexpired,
            )
            .group_by(AccessToken.operator_id)
        ).all()
    )

    def family_tokens(*conditions: ColumnElement[bool]) -> Exists:
        return exists().where(
            AccessToken.refresh_family_id == RefreshToken.family_id,
            AccessToken.operator_id == RefreshToken.operator_id,
            AccessToken.revoked_at.is_(None),
            *conditions,
        )

    kept_by_refresh = session.execute(
        select(RefreshToken.operator_id, func.count(distinct(RefreshToken.family_id)))
        .where(
            RefreshToken.company_id == company_id,
            RefreshToken.used_at.is_(None),
            RefreshToken.revoked_at.is_(None),
            RefreshToken.expires_at > now,
            family_tokens(AccessToken.expires_at <= now),
            ~family_tokens(unexpired),
        )
        .group_by(RefreshToken.operator_id)
    ).all()
    for operator_id, count in kept_by_refresh:
        counts[operator_id] = counts.get(operator_id, 0) + count
    return counts


def revoke_token(session: Session, operator_id: uuid.UUID, jti: str, reason: str) -> RevokedCounts:
    """Revokes one of the operator's tokens and its refresh family; NotFound when not theirs."""
    # Anything else is no token id; some of it (a NUL) the database would not even compare.
    if not _TOKEN_ID.fullmatch(jti):
        raise NotFound("no such token")
    record = session.scalar(
        select(AccessToken).where(AccessToken.jti == jti, AccessToken.operator_id == operator_id)
    )
    if record is None:
        raise NotFound("no such token")

    access = int(revoke_access_token(session, record.jti, reason))
    if record.refresh_family_id is None:
        return RevokedCounts(refresh_tokens=0, access_tokens=access)
    family = revoke_family(session, record.refresh_family_id, reason)
    return RevokedCounts(family.refresh_tokens, family.access_tokens + access)


def revoke_all_tokens(session: Session, operator_id: uuid.UUID, reason: str) -> RevokedCounts:
    """Signs the operator out of every API session: all access and refresh tokens."""
    refresh = revoke_operator_refresh_tokens(session, operator_id, reason)
    access = revoke_operator_tokens(session, operator_id, reason)
    return RevokedCounts(refresh_tokens=refresh, access_tokens=access)


def company_operator(session: Session, company_id: uuid.UUID, operator_id: str) -> Operator:
    """The operator with that id in that company; NotFound for anyone else, alike."""
    try:
        key = uuid.UUID(operator_id)
    except ValueError as exc:
        raise NotFound("no such operator") from exc
    operator = session.get(Operator, key)
    if operator is None or operator.company_id != company_id:
        raise NotFound("no such operator")
    return operator


def _live_refresh_families(
    session: Session, operator_id: uuid.UUID, now: datetime
) -> dict[str, datetime]:
    rows = session.execute(
        select(RefreshToken.family_id, RefreshToken.expires_at).where(
            RefreshToken.operator_id == operator_id,
            RefreshToken.used_at.is_(None),
            RefreshToken.revoked_at.is_(None),
            RefreshToken.expires_at > now,
        )
    ).all()
    return {family_id: expires_at for family_id, expires_at in rows}


def _summary(row: AccessToken, refreshable_until: datetime | None) -> TokenSummary:
    return TokenSummary(
        jti=row.jti,
        source=row.source,
        client_id=row.client_id,
        scope=row.scope,
        issued_at=row.issued_at,
        last_used_at=row.last_used_at,
        expires_at=row.expires_at,
        ip_address=row.ip_address,
        user_agent=row.user_agent,
        hint=row.hint,
        refreshable_until=refreshable_until,
    )
