"""Refresh tokens: opaque, stored by digest, rotated on every use, revoked by family.

A family is every refresh token (and every access token) descended from one password
grant. Presenting a refresh token that was already used means two parties hold it, so the
whole family is revoked (reuse detection, RFC 9700 §4.14.2).
"""

import secrets
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Update, bindparam, insert, select, update
from sqlalchemy.orm import Session

from erpauth.domain.audit import Origin
from erpauth.domain.tokens import IssuedAccessToken, TokenService
from erpauth.security.secrets import sha256_hex
from erpauth.storage.models import AccessToken, ApiClient, Company, Operator, RefreshToken


@dataclass(frozen=True)
class IssuedRefreshToken:
    token: str
    id: str
    family_id: str
    expires_at: datetime


@dataclass(frozen=True)
class RevokedCounts:
    refresh_tokens: int
    access_tokens: int


def new_family_id() -> str:
    return secrets.token_urlsafe(16)


def issue_refresh_token(
    session: Session,
    operator: Operator,
    company: Company,
    client: ApiClient,
    *,
    family_id: str,
    scope: str,
    ttl: timedelta,
) -> IssuedRefreshToken:
    """Makes a refresh token and records it."""
    issued, row = new_refresh_token(
        operator_id=operator.id,
        company_id=company.id,
        client_id=client.client_id,
        family_id=family_id,
        scope=scope,
        ttl=ttl,
    )
    # Straight on the connection: nothing reads the row back in this session, so the ORM's
    # unit of work and statement handling would be pure overhead on the refresh path.
    session.connection().execute(_INSERT_REFRESH_TOKEN, row)
    return issued


def new_refresh_token(
    *,
    operator_id: uuid.UUID,
    company_id: uuid.UUID,
    client_id: str,
    family_id: str,
    scope: str,
    ttl: timedelta,
) -> tuple[IssuedRefreshToken, dict[str, Any]]:
    """A refresh token (384 random bits) and its refresh_tokens row, which holds only its digest."""
    token = secrets.token_urlsafe(48)
    now = datetime.now(UTC)
    row_id = secrets.token_urlsafe(16)
    row = {
        "id": row_id,
        "token_hash": sha256_hex(token),
        "family_id": family_id,
        "operator_id": operator_id,
        "company_id": company_id,
        "client_id": client_id,
        "scope": scope,
        "issued_at": now,
        "expires_at": now + ttl,
    }
    return IssuedRefreshToken(token, row_id, family_id, now + ttl), row


_INSERT_REFRESH_TOKEN = insert(RefreshToken.__table__)


def issue_token_pair(
    session: Session,
    tokens: TokenService,
    operator: Operator,
    company: Company,
    client: ApiClient,
    *,
    source: str,
    scope: str,
    origin: Origin,
    family_id: str,
    refresh_ttl: timedelta,
) -> IssuedAccessToken:
    """An access token and a refresh token of the same family, in one transaction."""
    issued = tokens.issue(
        session,
        operator,
        company,
        client,
        source=source,
        scope=scope,
        ip_address=origin.ip_address,
        user_agent=origin.user_agent,
        refresh_family_id=family_id,
    )
    refresh = issue_refresh_token(
        session, operator, company, client, family_id=family_id, scope=scope, ttl=refresh_ttl
    )
    return replace(issued, refresh_token=refresh.token)


def find_refresh_token(session: Session, token: str) -> RefreshToken | None:
    return session.scalar(select(RefreshToken).where(RefreshToken.token_hash == sha256_hex(token)))


@dataclass(frozen=True)
class RefreshRequest:
    """What a refresh needs, read in one query: the presenting client, the token, its operator."""

    client: ApiClient
    company: Company
    record: RefreshToken
    operator: Operator


def find_for_refresh(session: Session, client_id: str, token: str) -> RefreshRequest | None:
    """The client named ``client_id`` (with its company), the refresh token and its operator.

    None when either the client or the token is unknown. The client is the one presenting
    the token, which may be another company's: the caller checks that they belong together.

    The operator's row is share-locked until the transaction ends. A password change,
    deactivation or loss of API permission updates that row, so it either commits first (and
    the row read here already shows it) or waits for this commit and then revokes the tokens
    issued here too. Refreshes of one operator share the lock and do not queue behind each
    other. SQLite takes no row locks; there writers are serialised by the database itself.
    """
    row = session.execute(
        _FIND_FOR_REFRESH, {"client_id": client_id, "token_hash": sha256_hex(token)}
    ).first()
    return RefreshRequest(*row) if row is not None else None


_FIND_FOR_REFRESH = (
    select(ApiClient, Company, RefreshToken, Operator)
    .join(Company, Company.id == ApiClient.company_id)
    .join(RefreshToken, RefreshToken.token_hash == bindparam("token_hash"))
    .join(Operator, Operator.id == RefreshToken.operator_id)
    .where(ApiClient.client_id == bindparam("client_id"))
    .with_for_update(read=True, of=Operator)
)


class RefreshTokenState(Protocol):
    """What is decided about a refresh token: a RefreshToken, or a row read without the ORM."""

    id: str
    family_id: str
    operator_id: uuid.UUID
    company_id: uuid.UUID
    client_id: str
    scope: str
    issued_at: datetime
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None


def is_live(record: RefreshTokenState, now: datetime | None = None) -> bool:
    """Neither used, nor revoked, nor expired."""
    now = now or datetime.now(UTC)
    return record.used_at is None and record.revoked_at is None and record.expires_at > now


def claim(session: Session, record: RefreshToken) -> bool:
    """Marks the token used, atomically; False when another request used or revoked it first.

    The condition sits in the UPDATE itself, so of two concurrent refreshes with the same
    token the database lets exactly one change the row, on SQLite and PostgreSQL alike.
    """
    result = session.connection().execute(
        _CLAIM, {"claimed_id": record.id, "now": datetime.now(UTC)}
    )
    return result.rowcount == 1


_CLAIM = (
    update(RefreshToken.__table__)
    .where(
        RefreshToken.id == bindparam("claimed_id"),
        RefreshToken.used_at.is_(None),
        RefreshToken.revoked_at.is_(None),
    )
    .values(used_at=bindparam("now"))
)


def revoke_family(session: Session, family_id: str, reason: str) -> RevokedCounts:
    """Revokes every refresh token of the family and every access token issued with them."""
    now = datetime.now(UTC)
    refresh = _revoke_refresh_tokens(
        session,
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason),
    )
    # After the refresh tokens: a rotation that was under way has committed by now, and this
    # statement sees the access token it issued.
    access = session.execute(
        update(AccessToken)
        .where(AccessToken.refresh_family_id == family_id, AccessToken.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
    )
    return RevokedCounts(refresh, int(access.rowcount or 0))


def revoke_operator_refresh_tokens(session: Session, operator_id: uuid.UUID, reason: str) -> int:
    """Revokes every refresh token of the operator that is not revoked yet."""
    return _revoke_refresh_tokens(
        session,
        update(RefreshToken)
        .where(RefreshToken.operator_id == operator_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC), revoked_reason=reason),
    )


def _revoke_refresh_tokens(session: Session, statement: Update) -> int:
    """Runs ``statement`` (an update that revokes refresh tokens) until it revokes no more.

    A rotation that has claimed one of these tokens holds its row until it commits; the update
    waits for it, then revokes the claimed token, but its snapshot, taken before that commit,
    does not hold the token the rotation issued (PostgreSQL, READ COMMITTED). The next run
    sees it. Every token revoked here stays locked until this transaction ends, so no further
    rotation of it can succeed: the runs end once none was under way.
    """
    revoked = 0
    while True:
        count = int(session.execute(statement).rowcount or 0)
        revoked += count
        if count == 0:
            return revoked
