"""Operators: the people who sign in, and who among them may use the API."""

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from erpauth.domain import audit
from erpauth.domain.audit import Origin
from erpauth.domain.errors import Conflict, DomainError, NotFound
from erpauth.domain.refresh_tokens import revoke_operator_refresh_tokens
from erpauth.domain.tokens import revoke_operator_tokens
from erpauth.security.passwords import PasswordHasher, password_problem
from erpauth.security.secrets import equal, new_password, sha256_hex
from erpauth.storage import db as storage_db
from erpauth.storage.models import Company, Operator, WebSession

# Deliberately loose: one @, something on each side, no spaces. Delivery proves the rest.
# No control characters either: PostgreSQL cannot store a NUL, and no address holds one.
EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
CHANGED_BY_SOMEONE_ELSE = (
    "the password was changed by someone else just now, so no new one was made; "
    "the operator has the password from that change"
)


def email_key(email: str) -> str:
    """The e-mail as a username: trimmed and lower-cased."""
    return email.strip().lower()


def create_operator(
    session: Session,
    hasher: PasswordHasher,
    company: Company,
    *,
    email: str,
    password: str,
    display_name: str | None = None,
    is_system_admin: bool = False,
    api_permission: bool = False,
) -> Operator:
    email = email.strip()
    if len(email) > 254 or not EMAIL.match(email):
        raise DomainError(f"{email!r} is not an e-mail address")
    if session.scalar(select(Operator.id).where(Operator.email_key == email_key(email))):
        raise Conflict(f"an operator with e-mail {email} exists already")
    problem = password_problem(password)
    if problem:
        raise DomainError(problem)
    display_name = (display_name or email.split("@")[0]).strip()[:200]
    if CONTROL.search(display_name):
        raise DomainError("the display name must not hold control characters")

    now = datetime.now(UTC)
    operator = Operator(
        company_id=company.id,
        email=email,
        email_key=email_key(email),
        display_name=display_name,
        password_hash=hasher.hash(password),
        is_active=True,
        is_system_admin=is_system_admin,
        api_permission=api_permission,
        password_changed_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(operator)
    session.flush()
    return operator


def create_and_audit_operator(
    session: Session,
    hasher: PasswordHasher,
    company: Company,
    origin: Origin,
    *,
    email: str,
    password: str,
    display_name: str | None = None,
    is_system_admin: bool = False,
    api_permission: bool = False,
    actor_id: uuid.UUID | None = None,
    detail: Mapping[str, Any] | None = None,
) -> Operator:
    """``create_operator``, and its ``operator.create`` audit event (with its log line) in the
    same session, so both are committed together or not at all.

    ``actor_id`` is the operator who created it (None from the command line); ``detail`` goes
    into the event as it is. The demo set-up, ``erpauth operator-create`` and the Users page
    all create operators through here.
    """
    operator = create_operator(
        session,
        hasher,
        company,
        email=email,
        password=password,
        display_name=display_name,
        is_system_admin=is_system_admin,
        api_permission=api_permission,
    )
    audit.record(
        session,
        "operator.create",
        "success",
        origin,
        company_id=company.id,
        actor_id=actor_id,
        operator_id=operator.id,
        **(detail or {}),
    )
    return operator


def hold_writer_lock_on_sqlite(session: Session, operator_id: uuid.UUID) -> None:
    """On SQLite, the writer lock (``storage.db.hold_writer_lock_on_sqlite``), taken by writing
    the operator's ``updated_at`` to itself; elsewhere nothing: the caller's locking read holds
    the operator's row."""
    no_op = update(Operator).where(Operator.id == operator_id)
    storage_db.hold_writer_lock_on_sqlite(session, no_op.values(updated_at=Operator.updated_at))


def lock_operator(session: Session, operator_id: uuid.UUID) -> Operator | None:
    """The operator read afresh and locked until the session commits.

    A password change or deactivation committed since the operator was last read is seen here,
    and one that comes later waits for this transaction, so ends what it opens (a web session)
    as well: for pages that check a password outside the transaction, then act on it.
    """
    hold_writer_lock_on_sqlite(session, operator_id)  # where FOR UPDATE holds nothing
    return session.scalars(
        select(Operator)
        .where(Operator.id == operator_id)
        .with_for_update(of=Operator)
        .execution_options(populate_existing=True)
    ).one_or_none()


def find_operator(session: Session, email: str) -> Operator | None:
    return session.scalar(select(Operator).where(Operator.email_key == email_key(email)))


def get_operator(session: Session, email: str) -> Operator:
    operator = find_operator(session, email)
    if operator is None:
        raise NotFound(f"no operator with e-mail {email}")
    return operator


def get_operator_by_id(session: Session, operator_id: uuid.UUID) -> Operator:
    operator = session.get(Operator, operator_id)
    if operator is None:
        raise NotFound("no such operator")
    return operator


def set_password(
    session: Session, hasher: PasswordHasher, operator: Operator, password: str
) -> None:
    """A new password ends every access and refresh token made with the old one, and every
    web session: whoever signed in with the old password is signed out everywhere. (The web
    page that changes the operator's own password then opens a session for its browser.)"""
    problem = password_problem(password)
    if problem:
        raise DomainError(problem)
    operator.password_hash = hasher.hash(password)
    operator.password_changed_at = datetime.now(UTC)
    _end_access(session, operator.id, "password_changed")
    session.flush()


def force_password_change(
    session: Session,
    hasher: PasswordHasher,
    operator: Operator,
    *,
    seen_version: str | None = None,
) -> str:
    """An administrator's reset: a generated password, and every token and web session ended.

    Returns the new password, to be handed to the operator once; it is stored only hashed.
    The password is replaced only if it is still the one this transaction read and, given
    ``seen_version`` (``password_version`` as the administrator's page showed it), the one
    the administrator saw. Otherwise another change won, and Conflict is raised: two
    administrators (or a double click) must never both be shown a password, only one of which
    is stored.
    """
    current = operator.password_hash
    if seen_version is not None and not equal(seen_version, password_version(operator)):
        raise Conflict(CHANGED_BY_SOMEONE_ELSE)
    password = new_password()
    result = session.execute(
        update(Operator)
        .where(Operator.id == operator.id, Operator.password_hash == current)
        .values(password_hash=hasher.hash(password), password_changed_at=datetime.now(UTC))
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:
        # Committed by a concurrent change after this transaction read the operator.
        raise Conflict(CHANGED_BY_SOMEONE_ELSE)
    session.expire(operator, ["password_hash", "password_changed_at"])

    _end_access(session, operator.id, "password_changed")
    session.flush()
    return password


def password_version(operator: Operator) -> str:
    """Which password the operator has, without telling anything about it: a short digest of
    the stored hash (salted, so each new password gives a new one)."""
    return sha256_hex(operator.password_hash)[:16]


def set_active(session: Session, operator: Operator, active: bool) -> None:
    """Deactivating an operator stops their tokens and ends their web sessions at once, and for
    good: activating them again later does not bring either back."""
    operator.is_active = active
    if not active:
        _end_access(session, operator.id, "operator_deactivated")
    session.flush()


def _end_access(session: Session, operator_id: uuid.UUID, reason: str) -> None:
    """Ends everything the operator's old password or standing gave: access and refresh
    tokens (revoked for ``reason``) and web sessions."""
    revoke_operator_tokens(session, operator_id, reason)
    revoke_operator_refresh_tokens(session, operator_id, reason)
    session.execute(delete(WebSession).where(WebSession.operator_id == operator_id))


def set_api_permission(session: Session, operator: Operator, allowed: bool) -> None:
    """Taking API permission away stops the operator's tokens at once, and for good."""
    operator.api_permission = allowed
    if not allowed:
        revoke_operator_tokens(session, operator.id, "api_permission_revoked")
        revoke_operator_refresh_tokens(session, operator.id, "api_permission_revoked")
    session.flush()
