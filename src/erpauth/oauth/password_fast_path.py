"""The password grant's fast path on PostgreSQL: the plain success, on the event loop.

A password grant is mostly one argon2 check, tens of milliseconds on a hashing thread. What
surrounds it cost milliseconds more on a worker thread: SQLAlchemy sessions, ORM rows, and
the hand-offs between request thread, hashing thread and event loop. Here the event loop
does the rest itself, on the psycopg connection under a pooled asyncio connection:

1. one read of the client, its company and the operator with this e-mail in that company,
   outside any transaction (as in ``password_grant``);
2. one trip to a hashing thread that reads the sign-in counters and checks the password;
3. one statement that share-locks the operator's row, checks that nothing the answer depends
   on has changed since the read (the password hash, the e-mail, the operator's standing, the
   license, the token lifetime) and, only then, inserts the access token, the refresh token
   and the audit event. It commits on its own: the lock is held until that commit, so a
   password change, deactivation or loss of API permission either commits first (and the
   statement writes nothing) or waits and then revokes these tokens too, as
   ``password_grant`` explains.

An unknown client or a wrong secret is refused right after the read, by the synchronous
grant's own functions (``client_refused``, ``refuse_wrong_client``: the same comparisons, the
same answer, audit event and log line), which write the record on a worker thread without
reading the client again. Anything else goes to the synchronous grant on a worker thread:
before the password check (a closed license), the whole grant, which answers and records as
ever; after it (a wrong password, a refusal, a hash to upgrade, a change found by
the statement), the grant's second half (``finish_grant``), with the check's outcome, so
that no password is checked or counted twice.
"""

import uuid
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool

from erpauth.domain import audit
from erpauth.domain.audit import Origin
from erpauth.domain.operators import email_key
from erpauth.domain.refresh_tokens import new_family_id, new_refresh_token
from erpauth.domain.tokens import IssuedAccessToken, access_token_row
from erpauth.oauth.client_auth import ClientCredentials
from erpauth.oauth.fast_path import raw_connection, token_insert_params, token_inserts
from erpauth.oauth.password_grant import (
    Candidate,
    client_refused,
    finish_grant,
    password_grant,
    read_password_form,
    refuse_wrong_client,
    sign_in_attempt,
)
from erpauth.services import Services

# The same rows as password_grant's first read, and what the token and the checks need.
# Columns in the order of _Found.
_FIND_CANDIDATE = """
    SELECT cl.client_id, cl.company_id, cl.primary_secret_encrypted,
           cl.secondary_secret_encrypted, co.api_enabled, co.token_expiry_hours,
           op.id, op.password_hash, op.email, op.is_active, op.api_permission
      FROM api_clients AS cl
      JOIN companies AS co ON co.id = cl.company_id
      LEFT JOIN operators AS op
        ON op.email_key = %(email_key)s AND op.company_id = cl.company_id
     WHERE cl.client_id = %(client_id)s
"""

# `standing` yields the operator's row, share-locked, only while everything the token was
# signed from still holds; the inserts read from it.
_ISSUE = f"""
    WITH standing AS (
        SELECT op.id
          FROM operators AS op
          JOIN companies AS co ON co.id = op.company_id
          JOIN api_clients AS cl ON cl.company_id = co.id
         WHERE op.id = %(operator_id)s AND co.id = %(company_id)s
           AND cl.client_id = %(client_id)s
           AND op.password_hash = %(password_hash)s AND op.email = %(email)s
           AND op.is_active AND op.api_permission
           AND co.api_enabled AND co.token_expiry_hours = %(expiry_hours)s
           FOR SHARE OF op
    ), {token_inserts("standing")}
    SELECT count(*) FROM standing
"""  # noqa: S608 - the text is constant: every value goes as a parameter


@dataclass(slots=True)
class _Found:
    client_id: str
    company_id: uuid.UUID
    primary_secret_encrypted: str
    secondary_secret_encrypted: str
    api_enabled: bool
    token_expiry_hours: int
    operator_id: uuid.UUID | None
    password_hash: str | None
    email: str | None
    is_active: bool | None
    api_permission: bool | None


async def password_grant_on_event_loop(
    services: Services, credentials: ClientCredentials, form: dict[str, str], origin: Origin
) -> IssuedAccessToken:
    """The password grant for PostgreSQL: the fast path where it can answer, else the
    synchronous grant (or its second half) on a worker thread."""
    username, password, scope = read_password_form(form)
    async with raw_connection(services) as driver:
        cursor = await driver.execute(
            _FIND_CANDIDATE,
            {"client_id": credentials.client_id, "email_key": email_key(username)},
        )
        row = await cursor.fetchone()
    found = _Found(*row) if row is not None else None
    if client_refused(services.box, found, credentials.client_secret):
        # An unknown client or a wrong secret: refused here, by the synchronous grant's own
        # check and refusal, without reading the client again; the record on a worker thread.
        company_id = None if found is None else found.company_id
        raise await run_in_threadpool(
            refuse_wrong_client, services, credentials, origin, company_id
        )
    assert found is not None
    if not found.api_enabled:
        # Refused before any password is checked: the synchronous grant answers and records.
        return await run_in_threadpool(password_grant, services, credentials, form, origin)

    candidate = Candidate.of(found, services)
    attempt = sign_in_attempt(username, origin, candidate)
    guard = services.abuse.sign_in
    counted, password_ok = await guard.check_and_verify(attempt, candidate.password_hash, password)

    issued = None
    if password_ok and _plain(found, candidate, services):
        issued = await _issue(services, found, scope, origin)
    if issued is None:
        return await run_in_threadpool(
            finish_grant,
            services,
            attempt,
            candidate,
            password_ok,
            counted,
            password,
            scope,
            origin,
        )
    await guard.record_async(attempt, password_ok, counted)
    services.fast_password_grants += 1
    return issued


def _plain(found: _Found, candidate: Candidate, services: Services) -> bool:
    """Whether, as read, the grant simply succeeds, with nothing else to write."""
    return (
        found.operator_id is not None
        and bool(found.is_active)
        and bool(found.api_permission)
        and not candidate.rehash
        # Signing would first read the key ring from the database: never on the event loop.
        and not services.keys.signing_would_reload()
    )


async def _issue(
    services: Services, found: _Found, scope: str, origin: Origin
) -> IssuedAccessToken | None:
    """Signs and records the tokens; None, having written nothing, when the operator, the
    license or the client changed since the first read."""
    assert found.operator_id is not None and found.email is not None
    signed = services.tokens.sign(
        operator_id=found.operator_id,
        email=found.email,
        company_id=found.company_id,
        client_id=found.client_id,
        scope=scope,
        expiry_hours=found.token_expiry_hours,
    )
    family_id = new_family_id()
    access_row = access_token_row(
        signed,
        source="token_endpoint",
        refresh_family_id=family_id,
        ip_address=origin.ip_address,
        user_agent=origin.user_agent,
    )
    refresh, refresh_row = new_refresh_token(
        operator_id=found.operator_id,
        company_id=found.company_id,
        client_id=found.client_id,
        family_id=family_id,
        scope=scope,
        ttl=timedelta(hours=services.settings.refresh_token_ttl_hours),
    )
    event = audit.event_row(
        "token.issue",
        "success",
        origin,
        company_id=found.company_id,
        operator_id=found.operator_id,
        client_id=found.client_id,
        detail={"jti": signed.jti, "family_id": family_id},
    )
    params: dict[str, Any] = token_insert_params(access_row, refresh_row, event)
    params.update(
        operator_id=found.operator_id,
        company_id=found.company_id,
        client_id=found.client_id,
        password_hash=found.password_hash,
        email=found.email,
        expiry_hours=found.token_expiry_hours,
    )
    async with raw_connection(services) as driver:
        cursor = await driver.execute(_ISSUE, params)
        written = await cursor.fetchone()
    if written is None or written[0] != 1:
        return None
    audit.log_row(event, origin)
    return replace(signed.issued(), refresh_token=refresh.token)
