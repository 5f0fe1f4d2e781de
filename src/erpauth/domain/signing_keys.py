"""Signing key rotation: add a key that signs from now on, retire keys no longer wanted.

The newest key that is not retired signs. Older keys still verify the tokens they signed,
until they are retired; from then on those tokens are refused. Every process re-reads the
key table at least every 30 seconds (see ``security.keys.KeyRing``).
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from erpauth.domain.errors import Conflict, NotFound
from erpauth.security.keys import create_signing_key
from erpauth.security.secrets import SecretBox
from erpauth.storage.models import SigningKey

KeyStatus = Literal["signing", "verifying", "retired"]


@dataclass(frozen=True)
class SigningKeyInfo:
    kid: str
    algorithm: str
    status: KeyStatus
    created_at: datetime
    retired_at: datetime | None


def list_signing_keys(session: Session) -> list[SigningKeyInfo]:
    """Every key, newest first, with what it is used for now."""
    rows = session.scalars(
        select(SigningKey).order_by(SigningKey.created_at.desc(), SigningKey.kid)
    ).all()
    signing = next((row.kid for row in rows if row.retired_at is None), None)
    return [_info(row, signing) for row in rows]


def rotate_signing_key(session: Session, box: SecretBox) -> SigningKeyInfo:
    """Adds a key; being the newest, it signs every token from now on."""
    row = create_signing_key(session, box)
    return _info(row, row.kid)


def retire_signing_key(session: Session, kid: str) -> SigningKeyInfo:
    """Stops accepting tokens signed with the key; the key that signs now cannot be retired."""
    row = session.get(SigningKey, kid)
    if row is None:
        raise NotFound(f"no signing key {kid!r}")
    if row.retired_at is not None:
        raise Conflict(f"the signing key {kid!r} is retired already")

    signing = [key.kid for key in list_signing_keys(session) if key.status == "signing"]
    if signing == [kid]:
        raise Conflict(
            f"the signing key {kid!r} signs new tokens; run keys-rotate first, then retire it"
        )

    row.retired_at = datetime.now(UTC)
    session.flush()
    return _info(row, None)


def _info(row: SigningKey, signing_kid: str | None) -> SigningKeyInfo:
    status: KeyStatus = "retired"
    if row.retired_at is None:
        status = "signing" if row.kid == signing_kid else "verifying"
    return SigningKeyInfo(row.kid, row.algorithm, status, row.created_at, row.retired_at)
