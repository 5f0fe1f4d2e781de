"""Audit trail: the company's security events, newest first, for System Administrators.

Events are read with ``erpauth.domain.audit.list_events``, which never returns another
company's events. No event holds a password, secret or token, so none can be shown here.
"""

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from erpauth.domain.audit import MAX_EVENTS, list_events
from erpauth.storage.models import AuditEvent, Operator
from erpauth.web.access import SystemAdmin, Viewer, services_of
from erpauth.web.render import page

router = APIRouter(include_in_schema=False)

AUDIT = "/audit"
PAGE_SIZE = 50
LAST_PAGE = MAX_EVENTS // PAGE_SIZE
# What a typed time may look like: a date, or the date and time of <input type=datetime-local>.
PERIODS = (
    ("%Y-%m-%d", timedelta(days=1)),
    ("%Y-%m-%dT%H:%M", timedelta(minutes=1)),
    ("%Y-%m-%dT%H:%M:%S", timedelta(seconds=1)),
)

# What each kind of event is called on the page; a kind not named here shows as it is stored.
KINDS = {
    "web.signin": "Sign-in",
    "web.signout": "Sign-out",
    "web.reauth": "Password dialog",
    "signin.throttled": "Sign-in held back",
    "signin.lockout": "Sign-in lockout",
    "signin.busy": "Sign-in turned away (busy)",
    "ratelimit.hit": "Rate limit reached",
    "token.issue": "Access token issued",
    "token.refresh": "Access token refreshed",
    "token.reuse": "Refresh token reused",
    "token.revoke": "Token revoked",
    "secret.show": "Client secret shown",
    "secret.regenerate": "Client secret regenerated",
    "policy.change": "Token expiry or call limit changed",
    "license.change": "License changed",
    "company.create": "Company created",
    "operator.create": "Operator created",
    "operator.activate": "Operator activated",
    "operator.deactivate": "Operator deactivated",
    "permission.grant": "API permission granted",
    "permission.revoke": "API permission revoked",
    "password.change": "Password changed",
}


@dataclass
class Filters:
    """The filters as typed (to show them again) and as understood (to query with)."""

    kind: str = ""
    operator: str = ""
    since: str = ""
    until: str = ""
    page: int = 1
    kind_value: str | None = None
    operator_id: uuid.UUID | None = None
    since_value: datetime | None = None
    until_value: datetime | None = None
    problems: dict[str, str] = field(default_factory=dict)

    def query(self, page: int) -> str:
        typed = {"kind": self.kind, "operator": self.operator}
        typed |= {"since": self.since, "until": self.until}
        wanted = {key: value for key, value in typed.items() if value}
        if page > 1:
            wanted["page"] = str(page)
        return f"{AUDIT}?{urlencode(wanted)}" if wanted else AUDIT


@dataclass(frozen=True)
class Person:
    name: str
    email: str

    @property
    def label(self) -> str:
        return f"{self.name} ({self.email})"


@dataclass(frozen=True)
class EventRow:
    day: str
    time: str
    kind: str
    label: str
    outcome: str
    operator: Person | None
    actor: Person | None
    ip_address: str | None
    user_agent: str | None
    details: list[tuple[str, str]]


@router.get(AUDIT)
def audit_page(
    request: Request,
    viewer: SystemAdmin,
    kind: str = "",
    operator: str = "",
    since: str = "",
    until: str = "",
    page_number: Annotated[str, Query(alias="page")] = "",
) -> Response:
    services = services_of(request)
    with services.database.session() as session:
        people = _people(session, viewer)
        filters = _read_filters(kind, operator, since, until, page_number, people)
        kinds = _kinds(session, viewer, filters.kind_value)
        rows: list[EventRow] = []
        more = capped = False
        if not filters.problems:
            wanted = min(filters.page * PAGE_SIZE + 1, MAX_EVENTS)
            events = list_events(
                session,
                viewer.company_id,
                kind=filters.kind_value,
                operator_id=filters.operator_id,
                since=filters.since_value,
                until=filters.until_value,
                limit=wanted,
            )
            start = (filters.page - 1) * PAGE_SIZE
            rows = [_row(event, people) for event in events[start : start + PAGE_SIZE]]
            more = len(events) > start + PAGE_SIZE
            capped = not more and len(events) == MAX_EVENTS

    return page(
        request,
        "audit.html",
        viewer=viewer,
        status=400 if filters.problems else 200,
        active="audit",
        filters=filters,
        kinds=kinds,
        people=sorted(people.items(), key=lambda item: item[1].label.lower()),
        rows=rows,
        newer=filters.query(filters.page - 1) if filters.page > 1 else None,
        older=filters.query(filters.page + 1) if more else None,
        capped=capped,
        max_events=MAX_EVENTS,
        first_shown=(filters.page - 1) * PAGE_SIZE + 1,
    )


def _read_filters(
    kind: str,
    operator: str,
    since: str,
    until: str,
    page: str,
    people: dict[uuid.UUID, Person],
) -> Filters:
    filters = Filters(kind=kind[:64], operator=operator[:64], since=since[:32], until=until[:32])
    filters.kind_value = filters.kind or None
    if not filters.kind.isprintable():
        # No kind of event holds a control character, and PostgreSQL cannot compare a NUL.
        filters.kind_value = None
        filters.problems["kind"] = "There is no such kind of event."
    filters.page = int(page) if page.isascii() and page.isdigit() else 1
    filters.page = min(max(filters.page, 1), LAST_PAGE)

    if filters.operator:
        try:
            filters.operator_id = uuid.UUID(filters.operator)
        except ValueError:
            filters.operator_id = None
        if filters.operator_id not in people:
            filters.problems["operator"] = "There is no such operator in your company."

    since_period, until_period = _period(filters.since), _period(filters.until)
    if filters.since and since_period is None:
        filters.problems["since"] = "Enter the start as a date, or a date and time."
    if filters.until and until_period is None:
        filters.problems["until"] = "Enter the end as a date, or a date and time."
    if since_period is not None:
        filters.since_value = since_period[0]
    if until_period is not None:
        # "To" includes the day, minute or second it names; after the last day there is none.
        start, length = until_period
        filters.until_value = (
            start + length if start < datetime.max.replace(tzinfo=UTC) - length else None
        )
    if filters.since_value and filters.until_value and filters.since_value >= filters.until_value:
        filters.problems["until"] = "The end must come after the start."
    return filters


def _period(text: str) -> tuple[datetime, timedelta] | None:
    """The start and length of the day, minute or second ``text`` names, read as UTC."""
    text = text.strip()
    for layout, length in PERIODS:
        try:
            return datetime.strptime(text, layout).replace(tzinfo=UTC), length
        except ValueError:
            continue
    return None


def _people(session: Session, viewer: Viewer) -> dict[uuid.UUID, Person]:
    """The company's operators by id."""
    rows = session.execute(
        select(Operator.id, Operator.display_name, Operator.email).where(
            Operator.company_id == viewer.company_id
        )
    ).all()
    return {row.id: Person(row.display_name, row.email) for row in rows}


def _kinds(session: Session, viewer: Viewer, selected: str | None) -> list[tuple[str, str]]:
    """The kinds of event the company's trail holds, as (kind, label), by label."""
    present = set(
        session.scalars(
            select(AuditEvent.kind).where(AuditEvent.company_id == viewer.company_id).distinct()
        )
    )
    if selected:
        present.add(selected)
    return sorted(((kind, KINDS.get(kind, kind)) for kind in present), key=lambda k: k[1])


def _row(event: AuditEvent, people: dict[uuid.UUID, Person]) -> EventRow:
    def person(operator_id: uuid.UUID | None) -> Person | None:
        if operator_id is None:
            return None
        # An operator deleted since keeps their id in the trail.
        return people.get(operator_id, Person("Former operator", str(operator_id)))

    occurred = event.occurred_at.astimezone(UTC)
    return EventRow(
        day=f"{occurred.day} {occurred:%b %Y}",
        time=f"{occurred:%H:%M:%S}",
        kind=event.kind,
        label=KINDS.get(event.kind, event.kind),
        outcome=event.outcome,
        operator=person(event.operator_id),
        actor=person(event.actor_id) if event.actor_id != event.operator_id else None,
        ip_address=event.ip_address,
        user_agent=event.user_agent,
        details=[
            (key, _plain(value))
            for key, value in sorted((event.detail or {}).items())
            if value is not None
        ],
    )


def _plain(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)
