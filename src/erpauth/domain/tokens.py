"""Access tokens: issuing signed JWTs, checking them on every request, revoking them."""

import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from erpauth.config import Settings
from erpauth.security.keys import ALGORITHM, KeyRing
from erpauth.security.secrets import equal, sha256_hex
from erpauth.storage.db import Database
from erpauth.storage.models import AccessToken, ApiClient, Company, Operator

log = logging.getLogger("erpauth.tokens")

DEFAULT_SCOPE = "api"
SUPPORTED_SCOPES = frozenset({DEFAULT_SCOPE})
JWT_TYPE = "at+jwt"  # RFC 9068 §2.1
LAST_USED_RESOLUTION = timedelta(seconds=60)
CLOCK_SKEW_SECONDS = 10


class InvalidToken(Exception):
    """The bearer token cannot be used; the message says why, for the caller."""


@dataclass(frozen=True)
class IssuedAccessToken:
    token: str
    jti: str
    expires_in: int | None
    expires_at: datetime | None
    scope: str
    # Set when the grant also hands out a refresh token (RFC 6749 §5.1).
    refresh_token: str | None = None


@dataclass(frozen=True)
class TokenContext:
    """Who a valid access token speaks for."""

    jti: str
    operator_id: uuid.UUID
    email: str
    display_name: str
    is_system_admin: bool
    company_id: uuid.UUID
    company_name: str
    account_code: str
    client_id: str
    scope: str
    issued_at: datetime
    expires_at: datetime | None
    # Read with the token, so the call limit costs no query of its own.
    call_limit_per_minute: int


class TokenService:
    def __init__(self, settings: Settings, database: Database, keys: KeyRing) -> None:
        self._settings = settings
        self._database = database
        self._keys = keys

    def issue(
        self,
        session: Session,
        operator: Operator,
        company: Company,
        client: ApiClient,
        *,
        source: str,
        scope: str = DEFAULT_SCOPE,
        ip_address: str | None = None,
        user_agent: str | None = None,
        refresh_family_id: str | None = None,
    ) -> IssuedAccessToken:
        """Signs a token for the operator and records it (by digest) in the same transaction."""
        now = datetime.now(UTC).replace(microsecond=0)
        expires_at = None
        if company.token_expiry_hours > 0:
            expires_at = now + timedelta(hours=company.token_expiry_hours)
        jti = secrets.token_urlsafe(24)

        claims = {
            "iss": self._settings.issuer,
            "sub": str(operator.id),
            "aud": self._settings.audience,
            "client_id": client.client_id,
            "company_id": str(company.id),
            "email": operator.email,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "jti": jti,
            "scope": scope,
        }
        if expires_at is not None:
            claims["exp"] = int(expires_at.timestamp())

        key = self._keys.signing_key()
        token = jwt.encode(
            claims,
            key.private_key,
            algorithm=ALGORITHM,
            headers={"kid": key.kid, "typ": JWT_TYPE},
        )
        session.add(
            AccessToken(
                jti=jti,
                token_hash=sha256_hex(token),
                hint=token[-6:],
                operator_id=operator.id,
                company_id=company.id,
                client_id=client.client_id,
                source=source,
                scope=scope,
                refresh_family_id=refresh_family_id,
                issued_at=now,
                expires_at=expires_at,
                ip_address=ip_address,
                user_agent=(user_agent or "")[:300] or None,
            )
        )
        session.flush()

        expires_in = int((expires_at - now).total_seconds()) if expires_at else None
        return IssuedAccessToken(token, jti, expires_in, expires_at, scope)

    def authenticate(self, token: str) -> TokenContext:
        """Checks signature, claims and the current state of token, operator and license."""
        claims = self._verify_signature(token)

        with self._database.session() as session:
            row = session.execute(
                select(AccessToken, Operator, Company)
                .join(Operator, Operator.id == AccessToken.operator_id)
                .join(Company, Company.id == AccessToken.company_id)
                .where(AccessToken.jti == claims["jti"])
            ).first()
            if row is None:
                raise InvalidToken("the access token is not known")
            record, operator, company = row
            self._check_standing(token, claims, record, operator, company)

            now = datetime.now(UTC)
            if record.last_used_at is None or now - record.last_used_at > LAST_USED_RESOLUTION:
                session.execute(
                    update(AccessToken)
                    .where(AccessToken.jti == record.jti)
                    .values(last_used_at=now)
                )

            return TokenContext(
                jti=record.jti,
                operator_id=operator.id,
                email=operator.email,
                display_name=operator.display_name,
                is_system_admin=operator.is_system_admin,
                company_id=company.id,
                company_name=company.name,
                account_code=company.account_code,
                client_id=record.client_id,
                scope=record.scope,
                issued_at=record.issued_at,
                expires_at=record.expires_at,
                call_limit_per_minute=company.call_limit_per_minute,
            )

    def _verify_signature(self, token: str) -> dict:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise InvalidToken("the access token is malformed") from exc
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("the access token is not signed by this server")
        key = self._keys.verification_key(str(header.get("kid", "")))
        if key is None:
            raise InvalidToken("the access token is signed with an unknown key")

        try:
            return jwt.decode(
                token,
                key.public_key,
                algorithms=[ALGORITHM],
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["iss", "sub", "aud", "iat", "jti"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("the access token has expired") from exc
        except jwt.InvalidTokenError as exc:
            raise InvalidToken("the access token is invalid") from exc

    @staticmethod
    def _check_standing(
        token: str, claims: dict, record: AccessToken, operator: Operator, company: Company
    ) -> None:
        if not equal(record.token_hash, sha256_hex(token)):
            raise InvalidToken("the access token is not known")
        if claims["sub"] != str(operator.id) or claims.get("company_id") != str(company.id):
            raise InvalidToken("the access token is invalid")
        if record.revoked_at is not None:
            raise InvalidToken("the access token has been revoked")
        if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
            raise InvalidToken("the access token has expired")
        if not operator.is_active:
            raise InvalidToken("the operator's account is deactivated")
        if not operator.api_permission:
            raise InvalidToken("the operator no longer has API permission")
        if operator.company_id != company.id:
            raise InvalidToken("the access token is invalid")
        if not company.api_enabled:
            raise InvalidToken("API access is not enabled in this company's license")


def revoke_access_token(session: Session, jti: str, reason: str) -> bool:
    """Marks one token revoked; False when it was unknown or revoked before."""
    result = session.execute(
        update(AccessToken)
        .where(AccessToken.jti == jti, AccessToken.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC), revoked_reason=reason)
    )
    return bool(result.rowcount)


def revoke_operator_tokens(
    session: Session, operator_id: uuid.UUID, reason: str, *, source: str | None = None
) -> int:
    """Revokes every live access token of the operator (optionally only those of one source)."""
    statement = update(AccessToken).where(
        AccessToken.operator_id == operator_id, AccessToken.revoked_at.is_(None)
    )
    if source is not None:
        statement = statement.where(AccessToken.source == source)
    result = session.execute(statement.values(revoked_at=datetime.now(UTC), revoked_reason=reason))
    return int(result.rowcount or 0)
