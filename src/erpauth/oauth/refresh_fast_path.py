"""The refresh grant's fast path on PostgreSQL: the plain success, on the event loop.

Most refreshes simply succeed, and that case is short: one read, a signature, one write. Run
through SQLAlchemy sessions on a worker thread (``refresh_grant``), it cost milliseconds of
CPU, spent in per-statement machinery, round trips and the hand-off to the thread. Here it
takes a pooled asyncio connection and works on its psycopg connection directly, with two
statements, each its own transaction:

1. the joined read of client, company, refresh token and operator;
2. one statement that share-locks the operator's row and checks that the operator's and the
   license's standing still allow the refresh, claims the token, and only when both
   succeeded writes the access token, the next refresh token and the audit event. It
   commits on its own, durable as ever, and holds the lock until then, for the reason
   ``find_for_refresh`` gives: a password change, deactivation or loss of API permission
   either commits first (and this statement writes nothing) or waits for this commit and
   then revokes the new tokens too.

Between them run the synchronous grant's own checks: the client secret, the token's client
and liveness, the scope, the operator's and license's standing. Anything but the plain
success (an unknown client or token, a wrong secret, any refusal, a lost claim, a change
seen by the second statement) falls back to the synchronous grant on a worker thread, which
answers, records and detects reuse exactly as before. Nothing is written or logged here
unless the refresh succeeds, so the fallback never duplicates a record.
"""

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from starlette.concurrency import run_in_threadpool

from erpauth.domain import audit
from erpauth.domain.audit import Origin
from erpauth.domain.clients import secret_matches
from erpauth.domain.refresh_tokens import is_live, new_refresh_token
from erpauth.domain.tokens import IssuedAccessToken, access_token_row
from erpauth.oauth.client_auth import ClientCredentials
from erpauth.oauth.errors import InvalidScope
from erpauth.oauth.fast_path import raw_connection, token_insert_params, token_inserts
from erpauth.oauth.refresh_grant import (
    MAX_REFRESH_TOKEN_LENGTH,
    narrowed_scope,
    refresh_token_grant,
    standing_refusal,
    success_event,
)
from erpauth.oauth.scope import parse_scope
from erpauth.security.secrets import sha256_hex
from erpauth.services import Services

# The same rows as find_for_refresh, without its lock: the second statement takes it. Columns
# in the order of the row classes below.
_FIND_FOR_REFRESH = """
    SELECT cl.client_id, cl.primary_secret_encrypted, cl.secondary_secret_encrypted,
           co.id, co.api_enabled, co.token_expiry_hours,
           rt.id, rt.family_id, rt.operator_id, rt.company_id, rt.client_id, rt.scope,
           rt.issued_at, rt.expires_at, rt.used_at, rt.revoked_at,
           op.id, op.company_id, op.email, op.is_active, op.api_permission,
           op.password_changed_at
      FROM api_clients AS cl
      JOIN companies AS co ON co.id = cl.company_id
      JOIN refresh_tokens AS rt ON rt.token_hash = %(token_hash)s
      JOIN operators AS op ON op.id = rt.operator_id
     WHERE cl.client_id = %(client_id)s
"""

# `standing` yields the operator's row, share-locked, only while everything the refresh was
# decided on still holds (standing_refusal's conditions, and what the token is signed from).
# The claim has the same condition as refresh_tokens.claim: of two concurrent refreshes with
# one token, PostgreSQL lets exactly one update the row. The inserts read from `claimed`, so
# they write nothing unless both succeeded.
_ROTATE = f"""
    WITH standing AS (
        SELECT op.id
          FROM operators AS op
          JOIN companies AS co ON co.id = op.company_id
         WHERE op.id = %(operator_id)s AND co.id = %(company_id)s
           AND op.email = %(email)s AND op.is_active AND op.api_permission
           AND op.password_changed_at <= %(token_issued_at)s
           AND co.api_enabled AND co.token_expiry_hours = %(expiry_hours)s
           FOR SHARE OF op
    ), claimed AS (
        UPDATE refresh_tokens SET used_at = %(claimed_at)s
         WHERE id = %(claimed_id)s AND used_at IS NULL AND revoked_at IS NULL
           AND EXISTS (SELECT FROM standing)
        RETURNING id
    ), {token_inserts("claimed")}
    SELECT (SELECT count(*) FROM standing), (SELECT count(*) FROM claimed)
"""  # noqa: S608 - the text is constant: every value goes as a parameter


@dataclass(slots=True)
class _Client:
    client_id: str
    primary_secret_encrypted: str
    secondary_secret_encrypted: str


@dataclass(slots=True)
class _Company:
    id: uuid.UUID
    api_enabled: bool
    token_expiry_hours: int


@dataclass(slots=True)
class _RefreshToken:
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


@dataclass(slots=True)
class _Operator:
    id: uuid.UUID
    company_id: uuid.UUID
    email: str
    is_active: bool
    api_permission: bool
    password_changed_at: datetime


@dataclass(frozen=True)
class _Rotation:
    """A refresh decided on: the answer, and what the rotating statement writes."""

    issued: IssuedAccessToken
    params: dict[str, Any]
    event: dict[str, Any]


@dataclass(frozen=True)
class _Declined:
    """The fast path did not answer; the synchronous grant will."""

    claim_lost: bool = False


async def refresh_grant_on_event_loop(
    services: Services, credentials: ClientCredentials, form: dict[str, str], origin: Origin
) -> IssuedAccessToken:
    """The refresh grant for PostgreSQL: the fast path, else the synchronous grant on a thread."""
    outcome = await _fast_refresh(services, credentials, form, origin)
    if isinstance(outcome, _Declined):
        return await run_in_threadpool(
            refresh_token_grant, services, credentials, form, origin, claim_lost=outcome.claim_lost
        )
    services.fast_refreshes += 1
    return outcome


async def _fast_refresh(
    services: Services, credentials: ClientCredentials, form: dict[str, str], origin: Origin
) -> IssuedAccessToken | _Declined:
    presented = form.get("refresh_token")
    if not presented or len(presented) > MAX_REFRESH_TOKEN_LENGTH:
        return _Declined()
    try:
        requested_scope = parse_scope(form["scope"]) if "scope" in form else None
    except InvalidScope:
        return _Declined()

    async with raw_connection(services) as driver:
        outcome = await _refresh(driver, services, credentials, presented, requested_scope, origin)

    if isinstance(outcome, _Rotation):
        audit.log_row(outcome.event, origin)
        return outcome.issued
    return outcome


async def _refresh(
    driver: psycopg.AsyncConnection[Any],
    services: Services,
    credentials: ClientCredentials,
    presented: str,
    requested_scope: str | None,
    origin: Origin,
) -> _Rotation | _Declined:
    """The two statements: the read, then, if the refresh may go ahead, the write."""
    read = await driver.execute(
        _FIND_FOR_REFRESH,
        {"client_id": credentials.client_id, "token_hash": sha256_hex(presented)},
    )
    rotation = _decide(await read.fetchone(), services, credentials, requested_scope, origin)
    if rotation is None:
        return _Declined()

    rotated = await driver.execute(_ROTATE, rotation.params)
    written = await rotated.fetchone()
    if written is None or written[1] != 1:
        # Changed since the read: the standing (the synchronous grant tells why), or the token
        # itself, used or revoked by another request in between.
        return _Declined(claim_lost=written is not None and written[0] == 1)
    return rotation


def _decide(
    row: tuple[Any, ...] | None,
    services: Services,
    credentials: ClientCredentials,
    requested_scope: str | None,
    origin: Origin,
) -> _Rotation | None:
    """The new tokens and what to write, when this refresh is a plain success; else None.

    The checks are the synchronous grant's own, so both paths refuse the same requests.
    """
    if row is None:
        return None
    client = _Client(*row[0:3])
    company = _Company(*row[3:6])
    record = _RefreshToken(*row[6:16])
    operator = _Operator(*row[16:22])

    if not secret_matches(services.box, client, credentials.client_secret):
        return None
    if record.client_id != client.client_id or not is_live(record):
        return None
    scope = narrowed_scope(record.scope, requested_scope)
    if scope is None or standing_refusal(operator, company, record) is not None:
        return None
    if services.keys.signing_would_reload():
        # Signing would first read the key ring from the database: never on the event loop.
        return None

    signed = services.tokens.sign(
        operator_id=operator.id,
        email=operator.email,
        company_id=company.id,
        client_id=client.client_id,
        scope=scope,
        expiry_hours=company.token_expiry_hours,
    )
    access_row = access_token_row(
        signed,
        source="refresh",
        refresh_family_id=record.family_id,
        ip_address=origin.ip_address,
        user_agent=origin.user_agent,
    )
    refresh, refresh_row = new_refresh_token(
        operator_id=operator.id,
        company_id=company.id,
        client_id=client.client_id,
        family_id=record.family_id,
        scope=scope,
        ttl=timedelta(hours=services.settings.refresh_token_ttl_hours),
    )
    event = success_event(origin, client.client_id, record, signed.jti)

    params = token_insert_params(access_row, refresh_row, event)
    params.update(
        operator_id=operator.id,
        company_id=company.id,
        email=operator.email,
        token_issued_at=record.issued_at,
        expiry_hours=company.token_expiry_hours,
        claimed_id=record.id,
        claimed_at=datetime.now(UTC),
    )
    issued = replace(signed.issued(), refresh_token=refresh.token)
    return _Rotation(issued, params, event)
