"""What the grants' fast paths on PostgreSQL share: the raw connection and the token inserts.

The plain successful password and refresh grants run on the event loop, on the psycopg
connection under a pooled asyncio connection, each in two statements: a read, and a write
that commits on its own. The write locks the operator's row, checks again in its first part
(``source``) what the grant was decided on, and inserts the tokens and the audit event only
for the one row that part yields when all still holds: otherwise it writes nothing, and the
synchronous grant answers instead.
"""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.util import greenlet_spawn

from erpauth.services import Services


def token_inserts(source: str) -> str:
    """The access token, refresh token and audit event inserts, one each per row of ``source``.

    Casts give parameters that may be None (or are text meant for json) the column's type.
    """
    return f"""
    new_access_token AS (
        INSERT INTO access_tokens (
            jti, token_hash, hint, operator_id, company_id, client_id, source, scope,
            refresh_family_id, issued_at, expires_at, ip_address, user_agent
        )
        SELECT %(at_jti)s, %(at_token_hash)s, %(at_hint)s, %(at_operator_id)s,
               %(at_company_id)s, %(at_client_id)s, %(at_source)s, %(at_scope)s,
               %(at_refresh_family_id)s, %(at_issued_at)s, %(at_expires_at)s::timestamptz,
               %(at_ip_address)s, %(at_user_agent)s
          FROM {source}
    ), new_refresh_token AS (
        INSERT INTO refresh_tokens (
            id, token_hash, family_id, operator_id, company_id, client_id, scope, issued_at,
            expires_at
        )
        SELECT %(rt_id)s, %(rt_token_hash)s, %(rt_family_id)s, %(rt_operator_id)s,
               %(rt_company_id)s, %(rt_client_id)s, %(rt_scope)s, %(rt_issued_at)s,
               %(rt_expires_at)s
          FROM {source}
    ), audit_event AS (
        INSERT INTO audit_events (
            occurred_at, kind, outcome, company_id, actor_id, operator_id, client_id,
            ip_address, user_agent, detail
        )
        SELECT %(ae_occurred_at)s, %(ae_kind)s, %(ae_outcome)s, %(ae_company_id)s::uuid,
               %(ae_actor_id)s::uuid, %(ae_operator_id)s::uuid, %(ae_client_id)s,
               %(ae_ip_address)s, %(ae_user_agent)s, %(ae_detail)s::json
          FROM {source}
    )
    """  # noqa: S608 - source is the caller's constant: every value goes as a parameter


def token_insert_params(
    access_row: dict[str, Any], refresh_row: dict[str, Any], event: dict[str, Any]
) -> dict[str, Any]:
    """The parameters of ``token_inserts`` for these rows (``access_token_row``,
    ``new_refresh_token`` and ``audit.event_row``)."""
    params = {f"at_{column}": value for column, value in access_row.items()}
    params.update({f"rt_{column}": value for column, value in refresh_row.items()})
    params.update({f"ae_{column}": value for column, value in event.items()})
    params["ae_detail"] = json.dumps(event["detail"])
    return params


@asynccontextmanager
async def raw_connection(services: Services) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A pooled psycopg connection, in autocommit mode, for one fast path.

    Taken from the pool directly (``AsyncEngine.raw_connection``): no SQLAlchemy connection
    and transaction objects around it, which cost more than a fast path's statements. A
    psycopg error inside leaves as SQLAlchemy would have raised it, so the error handlers
    answer as they do for the synchronous paths (503 when the database cannot be reached).
    After any error the connection is rolled back, or thrown away when it is broken or the
    exchange was cut off halfway (a cancelled request).
    """
    engine = services.database.async_autocommit
    assert engine is not None, "only for databases with an asyncio driver"
    try:
        pooled = await engine.raw_connection()
    except psycopg.Error as exc:
        # The pool hands on the driver's own error when it cannot connect: as SQLAlchemy's
        # Connection would have raised it, so the database-down handler answers (503).
        raise DBAPIError.instance(
            None, None, exc, psycopg.Error, connection_invalidated=True
        ) from exc
    driver: psycopg.AsyncConnection[Any] = pooled.driver_connection
    try:
        yield driver
    except psycopg.Error as exc:
        invalidated = not await _rolled_back(driver)
        if invalidated:
            await greenlet_spawn(pooled.invalidate)
        raise DBAPIError.instance(
            None, None, exc, psycopg.Error, connection_invalidated=invalidated
        ) from exc
    except Exception:
        if not await _rolled_back(driver):
            await greenlet_spawn(pooled.invalidate)
        raise
    except BaseException:
        # Cancelled in the middle of an exchange: the connection's state is unknown.
        await greenlet_spawn(pooled.invalidate)
        raise
    finally:
        # Back to the pool (or, once invalidated, closed for good). The pool's SQLAlchemy
        # code reaches psycopg's asyncio methods only from within greenlet_spawn.
        await greenlet_spawn(pooled.close)


async def _rolled_back(driver: psycopg.AsyncConnection) -> bool:
    """Rolls back after an error; False when the connection is broken or will not roll back,
    and must go out of the pool rather than back to it."""
    if driver.broken or driver.closed:
        return False
    try:
        await driver.rollback()
    except psycopg.Error:
        return False
    return True
