"""The audit trail: one record and one log line per security decision."""

import logging
import uuid
from dataclasses import dataclass
from typing import Any

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
    event = AuditEvent(
        occurred_at=utcnow(),
        kind=kind,
        outcome=outcome,
        company_id=company_id,
        actor_id=actor_id,
        operator_id=operator_id,
        client_id=client_id,
        ip_address=origin.ip_address,
        user_agent=(origin.user_agent or "")[:300] or None,
        detail=detail,
    )
    session.add(event)
    log_event(kind, outcome, origin, company_id, actor_id, operator_id, client_id, detail)


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
