"""The audit trail: one record and one log line per security decision."""

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from erpauth.storage.models import AuditEvent, utcnow

log = logging.getLogger("erpauth.security")


@dataclass(frozen=True)
class Origin:
    """Where a request came from, as far as the audit trail cares."""

    ip_address: str | None = None
    user_agent: str | None = None

    @classmethod
    def cli(cls) -> "Origin":
        return cls(ip_address=None, user_agent="erpauth-cli")


def record(
    session: Session,
    kind: str,
    outcome: str,
    origin: Origin,
    *,
    company_id: uuid.UUID | None = None,
    actor_id: uuid.UUID | None = None,
    operator_id: uuid.UUID | None = None,
    client_id: str | None = None,
    **detail: Any,
) -> None:
    """Adds the event to the session (committed with the change it describes) and logs it."""
    row = event_row(
        kind,
        outcome,
        origin,
        company_id=company_id,
        actor_id=actor_id,
        operator_id=operator_id,
        client_id=client_id,
        detail=detail,
    )
    record_row(session, row, origin)


def record_row(session: Session, row: dict[str, Any], origin: Origin) -> None:
    """``record`` for an event already made into a row by ``event_row``."""
    session.add(AuditEvent(**row))
    log_row(row, origin)


def log_row(row: dict[str, Any], origin: Origin) -> None:
    """The log line of an event row, for writers that store the row themselves."""
    log_event(
        row["kind"],
        row["outcome"],
        origin,
        row["company_id"],
        row["actor_id"],
        row["operator_id"],
        row["client_id"],
        row["detail"],
    )


def event_row(
    kind: str,
    outcome: str,
    origin: Origin,
    *,
    company_id: uuid.UUID | None = None,
    actor_id: uuid.UUID | None = None,
    operator_id: uuid.UUID | None = None,
    client_id: str | None = None,
    detail: dict[str, Any],
) -> dict[str, Any]:
    """The audit_events row of an event, for ``record`` and for writers without a session."""
    return {
        "occurred_at": utcnow(),
        "kind": kind,
        "outcome": outcome,
        "company_id": company_id,
        "actor_id": actor_id,
        "operator_id": operator_id,
        "client_id": client_id,
        "ip_address": origin.ip_address,
        "user_agent": (origin.user_agent or "")[:300] or None,
        "detail": detail,
    }


def log_event(
    kind: str,
    outcome: str,
    origin: Origin,
    company_id: uuid.UUID | None = None,
    actor_id: uuid.UUID | None = None,
    operator_id: uuid.UUID | None = None,
    client_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    fields = {
        "event": kind,
        "outcome": outcome,
        "company_id": str(company_id) if company_id else None,
        "actor_id": str(actor_id) if actor_id else None,
        "operator_id": str(operator_id) if operator_id else None,
        "client_id": client_id,
        "ip": origin.ip_address,
        "user_agent": origin.user_agent,
        **(detail or {}),
    }
    log.info("%s %s", kind, outcome, extra={"fields": fields})


# The most events one call of list_events returns; pages go further with ``before``.
MAX_EVENTS = 1000


@dataclass(frozen=True)
class Position:
    """Where an event stands in the trail: by time, and by id among events of the same time."""

    occurred_at: datetime
    id: int

    @classmethod
    def of(cls, event: AuditEvent) -> "Position":
        return cls(event.occurred_at, event.id)


def list_events(
    session: Session,
    company_id: uuid.UUID,
    kind: str | None = None,
    operator_id: uuid.UUID | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    *,
    before: Position | None = None,
    after: Position | None = None,
) -> list[AuditEvent]:
    """One company's events, newest first; ``since`` is inclusive and ``until`` exclusive.

    ``before`` keeps the events older than a position: the next page of an older one, however
    far back (keyset paging, no offset). ``after`` keeps the events newer than a position and
    returns the ``limit`` nearest to it, still newest first: the page before.
    """
    statement = events_statement(company_id, kind, operator_id, since, until, before, after)
    events = list(session.scalars(statement.limit(max(1, min(limit, MAX_EVENTS)))))
    return events[::-1] if after is not None else events


def events_statement(
    company_id: uuid.UUID,
    kind: str | None = None,
    operator_id: uuid.UUID | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: Position | None = None,
    after: Position | None = None,
) -> Select[tuple[AuditEvent]]:
    """The query of ``list_events``, without its limit.

    The time bound of a position is written on its own (``occurred_at <= t``) beside the
    comparison of ids among equal times, so that both databases walk the index on
    (company_id, occurred_at) from the position on and read only about a page of it.
    """
    statement = _filtered(company_id, kind, operator_id, since, until)
    at, event_id = AuditEvent.occurred_at, AuditEvent.id
    if before is not None:
        statement = statement.where(
            at <= before.occurred_at, or_(at < before.occurred_at, event_id < before.id)
        )
    if after is not None:
        statement = statement.where(
            at >= after.occurred_at, or_(at > after.occurred_at, event_id > after.id)
        )
        return statement.order_by(at.asc(), event_id.asc())
    return statement.order_by(at.desc(), event_id.desc())


def export_events(
    session: Session,
    company_id: uuid.UUID | None = None,
    kind: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Iterator[AuditEvent]:
    """Every matching event, oldest first, read in batches; without a company, all of them."""
    statement = _filtered(company_id, kind, None, since, until, all_companies=company_id is None)
    statement = statement.order_by(AuditEvent.occurred_at, AuditEvent.id)
    yield from session.scalars(statement.execution_options(yield_per=500))


def event_view(event: AuditEvent) -> dict[str, Any]:
    """The event as plain JSON-ready values."""
    return {
        "id": event.id,
        "occurred_at": event.occurred_at.isoformat(),
        "kind": event.kind,
        "outcome": event.outcome,
        "company_id": str(event.company_id) if event.company_id else None,
        "actor_id": str(event.actor_id) if event.actor_id else None,
        "operator_id": str(event.operator_id) if event.operator_id else None,
        "client_id": event.client_id,
        "ip_address": event.ip_address,
        "user_agent": event.user_agent,
        "detail": event.detail or {},
    }


def _filtered(
    company_id: uuid.UUID | None,
    kind: str | None,
    operator_id: uuid.UUID | None,
    since: datetime | None,
    until: datetime | None,
    *,
    all_companies: bool = False,
) -> Select[tuple[AuditEvent]]:
    statement = select(AuditEvent)
    if not all_companies:
        # A company's trail never includes another company's events, nor unattributed ones.
        statement = statement.where(AuditEvent.company_id == company_id)
    if kind is not None:
        statement = statement.where(AuditEvent.kind == kind)
    if operator_id is not None:
        statement = statement.where(AuditEvent.operator_id == operator_id)
    if since is not None:
        statement = statement.where(AuditEvent.occurred_at >= since)
    if until is not None:
        statement = statement.where(AuditEvent.occurred_at < until)
    return statement
