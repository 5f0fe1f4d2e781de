"""Finding a token by its value, whichever kind it is, and revoking it."""

import uuid
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from erpauth.domain.refresh_tokens import RevokedCounts, revoke_family
from erpauth.domain.tokens import revoke_access_token
from erpauth.security.secrets import sha256_hex
from erpauth.storage.models import AccessToken, RefreshToken

TokenKind = Literal["access_token", "refresh_token"]

# Longer values are no token of ours; refusing them early keeps hashing cheap.
MAX_TOKEN_LENGTH = 4096


@dataclass(frozen=True)
class FoundToken:
    """Exactly one of ``access`` and ``refresh`` is set."""

    access: AccessToken | None = None
    refresh: RefreshToken | None = None

    @property
    def kind(self) -> TokenKind:
        return "access_token" if self.access is not None else "refresh_token"

    @property
    def company_id(self) -> uuid.UUID:
        record = self.access or self.refresh
        assert record is not None
        return record.company_id


def find_token(session: Session, token: str, hint: str | None = None) -> FoundToken | None:
    """The stored token with this value; the hint only decides which table is read first."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    digest = sha256_hex(token)

    def access() -> FoundToken | None:
        row = session.scalar(select(AccessToken).where(AccessToken.token_hash == digest))
        return FoundToken(access=row) if row is not None else None

    def refresh() -> FoundToken | None:
        row = session.scalar(select(RefreshToken).where(RefreshToken.token_hash == digest))
        return FoundToken(refresh=row) if row is not None else None

    order = (refresh, access) if hint == "refresh_token" else (access, refresh)
    for lookup in order:
        found = lookup()
        if found is not None:
            return found
    return None


def revoke_found(session: Session, found: FoundToken, reason: str) -> RevokedCounts:
    """An access token alone; a refresh token with its whole family (RFC 7009 §2.1)."""
    if found.access is not None:
        return RevokedCounts(0, int(revoke_access_token(session, found.access.jti, reason)))
    assert found.refresh is not None
    return revoke_family(session, found.refresh.family_id, reason)
