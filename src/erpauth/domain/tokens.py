"""Access tokens: issuing signed JWTs, checking them on every request, revoking them."""

import asyncio
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from sqlalchemy import Row, Update, bindparam, insert, select, update
from sqlalchemy.orm import Session

from erpauth.config import Settings
from erpauth.domain.standing import Standing, StandingCache
from erpauth.security.keys import ALGORITHM, KeyRing
from erpauth.security.lru import LRU
from erpauth.security.secrets import equal, sha256_hex
from erpauth.storage.db import Database
from erpauth.storage.models import AccessToken, ApiClient, Company, Operator

log = logging.getLogger("erpauth.tokens")

DEFAULT_SCOPE = "api"
SUPPORTED_SCOPES = frozenset({DEFAULT_SCOPE})
JWT_TYPE = "at+jwt"  # RFC 9068 §2.1
LAST_USED_RESOLUTION = timedelta(seconds=60)
_LAST_USED_SECONDS = LAST_USED_RESOLUTION.total_seconds()
CLOCK_SKEW_SECONDS = 10
VERIFIED_SIGNATURES = 10_000


# What the caller is told, with what to do about it: a new token comes from the token endpoint.
EXPIRED = "the access token has expired; get a new one with the refresh token or by signing in"
REVOKED = "the access token has been revoked; get a new one by signing in again"


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
class SignedAccessToken:
    """An access token just signed, with what its access_tokens row records."""

    token: str
    jti: str
    issued_at: datetime
    expires_at: datetime | None
    scope: str
    operator_id: uuid.UUID
    company_id: uuid.UUID
    client_id: str

    def issued(self) -> IssuedAccessToken:
        expires_in = None
        if self.expires_at is not None:
            expires_in = int((self.expires_at - self.issued_at).total_seconds())
        return IssuedAccessToken(self.token, self.jti, expires_in, self.expires_at, self.scope)


def access_token_row(
    signed: SignedAccessToken,
    *,
    source: str,
    refresh_family_id: str | None,
    ip_address: str | None,
    user_agent: str | None,
) -> dict[str, Any]:
    """The access_tokens row of a signed token: its digest and hint, never the token itself."""
    return {
        "jti": signed.jti,
        "token_hash": sha256_hex(signed.token),
        "hint": signed.token[-6:],
        "operator_id": signed.operator_id,
        "company_id": signed.company_id,
        "client_id": signed.client_id,
        "source": source,
        "scope": signed.scope,
        "refresh_family_id": refresh_family_id,
        "issued_at": signed.issued_at,
        "expires_at": signed.expires_at,
        "ip_address": ip_address,
        "user_agent": (user_agent or "")[:300] or None,
    }


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
    def __init__(
        self,
        settings: Settings,
        database: Database,
        keys: KeyRing,
        standing: StandingCache | None = None,
    ) -> None:
        self._settings = settings
        self._database = database
        self._keys = keys
        self.standing = standing if standing is not None else StandingCache(None, max_age=0)
        # Tokens whose signature this process has verified: an ES256 check costs more than
        # the rest of a request. Only the signature is remembered, never the token's standing.
        self._verified: LRU[str, tuple[str, dict]] = LRU(VERIFIED_SIGNATURES)

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
        signed = self.sign(
            operator_id=operator.id,
            email=operator.email,
            company_id=company.id,
            client_id=client.client_id,
            scope=scope,
            expiry_hours=company.token_expiry_hours,
        )
        # Straight on the connection, at once: no caller reads the row back, so the ORM's unit
        # of work would only add work, and the row must exist before anything revokes by operator.
        session.connection().execute(
            _INSERT_ACCESS_TOKEN,
            access_token_row(
                signed,
                source=source,
                refresh_family_id=refresh_family_id,
                ip_address=ip_address,
                user_agent=user_agent,
            ),
        )
        return signed.issued()

    def sign(
        self,
        *,
        operator_id: uuid.UUID,
        email: str,
        company_id: uuid.UUID,
        client_id: str,
        scope: str,
        expiry_hours: int,
    ) -> SignedAccessToken:
        """A new access token for the operator, signed but not recorded yet.

        ``expiry_hours`` is the company's token lifetime; 0 makes a token that never expires.
        """
        now = datetime.now(UTC).replace(microsecond=0)
        expires_at = now + timedelta(hours=expiry_hours) if expiry_hours > 0 else None
        jti = secrets.token_urlsafe(24)

        claims = {
            "iss": self._settings.issuer,
            "sub": str(operator_id),
            "aud": self._settings.audience,
            "client_id": client_id,
            "company_id": str(company_id),
            "email": email,
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
        return SignedAccessToken(
            token, jti, now, expires_at, scope, operator_id, company_id, client_id
        )

    def authenticate(self, token: str) -> TokenContext:
        """Checks signature, claims and the current state of token, operator and license.

        The signature check is remembered per token; the state is read on every call, in one
        query, so that revocation, deactivation and license changes count at once.
        """
        claims = self._verified_claims(token)
        with self._database.autocommit.connect() as connection:
            row = connection.execute(_TOKEN_STATE, {"jti": claims["jti"]}).first()
            _check_standing(token, claims, row)
            if _needs_touch(row.last_used_at):
                connection.execute(_touch(row.jti))
        return _context(row)

    async def authenticate_async(self, token: str) -> TokenContext:
        """``authenticate`` on the event loop, for databases with an asyncio driver.

        The standing comes from this process's cache while PostgreSQL's change notices keep
        it current (see ``erpauth.domain.standing``), else from one query.
        """
        engine = self._database.async_autocommit
        assert engine is not None, "only for databases with an asyncio driver"

        standing = self.standing
        cached = standing.get(token)
        if cached is not None and standing.behind():
            # A change notice has arrived but is not read yet: read it, then look again.
            cached = standing.get(token) if await standing.catch_up() else None
        if cached is not None:
            # Signature, claims and standing held when the entry was stored, and still do:
            # every change that could undo them is announced and drops the entry. Expiry is
            # the one thing that time alone changes.
            if cached.expires_at is not None and cached.expires_at <= time.time():
                raise InvalidToken(EXPIRED)
            now = time.monotonic()
            if now - cached.touched_at > _LAST_USED_SECONDS:
                cached.touched_at = now
                async with engine.connect() as connection:
                    await connection.execute(_touch(cached.jti))
            return cached.context

        generation = self.standing.generation
        kid = self._kid(token)
        if kid is not None and self._keys.would_reload(kid):
            # The key ring is read from the database first: never on the event loop, where a
            # slow or locked read would hold up every request of the process.
            claims = await asyncio.to_thread(self._verified_claims, token)
        else:
            claims = self._verified_claims(token)
        jti = claims["jti"]
        async with engine.connect() as connection:
            row = (await connection.execute(_TOKEN_STATE, {"jti": jti})).first()
            _check_standing(token, claims, row)
            # When last_used_at was written, on this process's clock.
            touched_at = time.monotonic()
            if _needs_touch(row.last_used_at):
                await connection.execute(_touch(jti))
            else:
                touched_at -= (datetime.now(UTC) - row.last_used_at).total_seconds()
        context = _context(row)
        expires_at = row.expires_at.timestamp() if row.expires_at is not None else None
        entry = Standing(jti, expires_at, context, touched_at, time.monotonic())
        self.standing.put(token, entry, generation)
        return context

    def _verified_claims(self, token: str) -> dict:
        """The claims of a token whose signature was verified, now or earlier in this process."""
        cached = self._verified.get(token)
        if cached is not None:
            kid, claims = cached
            # A retired key takes its tokens with it, and expiry is checked on every use.
            expired = "exp" in claims and claims["exp"] + CLOCK_SKEW_SECONDS <= time.time()
            if self._keys.verification_key(kid) is not None and not expired:
                return claims
            self._verified.pop(token, None)

        claims = self._verify_signature(token)
        self._verified.put(token, (jwt.get_unverified_header(token)["kid"], claims))
        return claims

    def _kid(self, token: str) -> str | None:
        """The kid a token names, as ``_verified_claims`` looks it up; None if unreadable."""
        cached = self._verified.get(token)
        if cached is not None:
            return cached[0]
        try:
            return str(jwt.get_unverified_header(token).get("kid", ""))
        except jwt.InvalidTokenError:
            return None  # refused as malformed before any key is looked up

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
            raise InvalidToken(EXPIRED) from exc
        except jwt.InvalidTokenError as exc:
            raise InvalidToken("the access token is invalid") from exc


_INSERT_ACCESS_TOKEN = insert(AccessToken.__table__)

_TOKEN_STATE = (
    select(
        AccessToken.jti,
        AccessToken.token_hash,
        AccessToken.client_id,
        AccessToken.scope,
        AccessToken.issued_at,
        AccessToken.expires_at,
        AccessToken.last_used_at,
        AccessToken.revoked_at,
        Operator.id.label("operator_id"),
        Operator.company_id.label("operator_company_id"),
        Operator.email,
        Operator.display_name,
        Operator.is_system_admin,
        Operator.is_active,
        Operator.api_permission,
        Company.id.label("company_id"),
        Company.name.label("company_name"),
        Company.account_code,
        Company.api_enabled,
        Company.call_limit_per_minute,
    )
    .join(Operator, Operator.id == AccessToken.operator_id)
    .join(Company, Company.id == AccessToken.company_id)
    .where(AccessToken.jti == bindparam("jti"))
)


def _check_standing(token: str, claims: dict, row: Row | None) -> None:
    if row is None:
        raise InvalidToken("the access token is not known")
    if not equal(row.token_hash, sha256_hex(token)):
        raise InvalidToken("the access token is not known")
    if claims["sub"] != str(row.operator_id) or claims.get("company_id") != str(row.company_id):
        raise InvalidToken("the access token is invalid")
    if row.revoked_at is not None:
        raise InvalidToken(REVOKED)
    if row.expires_at is not None and row.expires_at <= datetime.now(UTC):
        raise InvalidToken(EXPIRED)
    if not row.is_active:
        raise InvalidToken("the operator's account is deactivated")
    if not row.api_permission:
        raise InvalidToken("the operator no longer has API permission")
    if row.operator_company_id != row.company_id:
        raise InvalidToken("the access token is invalid")
    if not row.api_enabled:
        raise InvalidToken("API access is not enabled in this company's license")


def _needs_touch(last_used_at: datetime | None) -> bool:
    return last_used_at is None or datetime.now(UTC) - last_used_at > LAST_USED_RESOLUTION


def _touch(jti: str) -> Update:
    return update(AccessToken).where(AccessToken.jti == jti).values(last_used_at=datetime.now(UTC))


def _context(row: Row) -> TokenContext:
    return TokenContext(
        jti=row.jti,
        operator_id=row.operator_id,
        email=row.email,
        display_name=row.display_name,
        is_system_admin=row.is_system_admin,
        company_id=row.company_id,
        company_name=row.company_name,
        account_code=row.account_code,
        client_id=row.client_id,
        scope=row.scope,
        issued_at=row.issued_at,
        expires_at=row.expires_at,
        call_limit_per_minute=row.call_limit_per_minute,
    )


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
