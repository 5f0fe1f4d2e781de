"""Server-side sessions of signed-in browsers, kept in ``web_sessions``.

The cookie holds a random session id; the table holds only its SHA-256, so a copy of the
database does not let anyone take over a session. Each session carries its own CSRF token.
"""

import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from starlette.responses import Response

from erpauth.config import Settings
from erpauth.domain.audit import Origin
from erpauth.security.secrets import sha256_hex
from erpauth.storage.models import Operator, WebSession

# Writing last_seen_at on every page view would turn reads into writes; a minute is fine
# for an idle limit counted in minutes.
TOUCH_RESOLUTION = timedelta(seconds=60)


def host_cookie(settings: Settings, name: str) -> str:
    """A cookie's name: over HTTPS with the __Host- prefix, which makes the browser refuse the
    cookie unless it is Secure, host-only and for path /, so a sibling subdomain cannot plant
    one."""
    return "__Host-" + name if settings.secure_cookies else name


def cookie_name(settings: Settings) -> str:
    return host_cookie(settings, "erpauth_session")


def set_session_cookie(response: Response, settings: Settings, session_id: str) -> None:
    response.set_cookie(
        cookie_name(settings),
        session_id,
        httponly=True,
        secure=settings.secure_cookies,
        samesite="lax",
        path="/",
    )


def clear_session_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        cookie_name(settings), secure=settings.secure_cookies, httponly=True, samesite="lax"
    )


def start_session(
    session: Session,
    settings: Settings,
    operator: Operator,
    origin: Origin,
    *,
    replacing: str | None = None,
) -> str:
    """Opens a session for the operator and returns the new session id for the cookie.

    Whatever session the browser had before is ended, so an id planted before sign-in is
    never the one that gets signed in (session fixation).
    """
    if replacing:
        end_session(session, replacing)
    now = datetime.now(UTC)
    session.execute(
        delete(WebSession).where(
            WebSession.operator_id == operator.id, WebSession.expires_at <= now
        )
    )

    session_id = secrets.token_urlsafe(32)
    session.add(
        WebSession(
            id_hash=sha256_hex(session_id),
            operator_id=operator.id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(minutes=settings.session_ttl_minutes),
            ip_address=origin.ip_address,
            user_agent=(origin.user_agent or "")[:300] or None,
        )
    )
    session.flush()
    return session_id


def load_session(
    session: Session, settings: Settings, session_id: str
) -> tuple[WebSession, Operator] | None:
    """The live session and its operator; a session past its time or its operator's is ended."""
    if not session_id or len(session_id) > 128:
        return None
    row = session.execute(
        select(WebSession, Operator)
        .join(Operator, Operator.id == WebSession.operator_id)
        .where(WebSession.id_hash == sha256_hex(session_id))
    ).first()
    if row is None:
        return None
    web_session, operator = row

    # Written as statements, not through the loaded row: another request may end the session
    # meanwhile (sign-out in another tab, a password change), and the ORM would take a write
    # that finds no row for a conflict and fail the page.
    now = datetime.now(UTC)
    idle_limit = web_session.last_seen_at + timedelta(minutes=settings.session_idle_minutes)
    if web_session.expires_at <= now or idle_limit <= now or not operator.is_active:
        end_session(session, session_id)
        return None

    if now - web_session.last_seen_at > TOUCH_RESOLUTION:
        _set(session, session_id, last_seen_at=now)
    return web_session, operator


def reauthenticated(
    session: Session, settings: Settings, operator: Operator, origin: Origin, session_id: str
) -> tuple[str, str]:
    """Moves the browser whose operator just typed their password again to a new session, as
    sign-in does, and returns its id and CSRF token; the old session ends.

    The session now proves more than before, so an id someone else may know (planted, or seen
    before) must not be the one that carries it (session fixation). A second click sent with
    the old id at the same moment proves the password too, and gets a session of its own.
    """
    new_id = start_session(session, settings, operator, origin, replacing=session_id)
    web_session = session.get(WebSession, sha256_hex(new_id))
    assert web_session is not None  # added by start_session in this transaction
    web_session.reauthenticated_at = datetime.now(UTC)
    return new_id, web_session.csrf_token


def _set(session: Session, session_id: str, **values: datetime) -> None:
    session.execute(
        update(WebSession)
        .where(WebSession.id_hash == sha256_hex(session_id))
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def end_session(session: Session, session_id: str) -> None:
    session.execute(delete(WebSession).where(WebSession.id_hash == sha256_hex(session_id)))
