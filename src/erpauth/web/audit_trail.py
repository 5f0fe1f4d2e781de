"""Audit trail: the company's security events, newest first, for System Administrators.

Events are read with ``erpauth.domain.audit.list_events``, which never returns another
company's events. No event holds a password, secret or token, so none can be shown here.

Pages are found by position, not by counting: "Older events" asks for the events before the
last one shown (``before=<time>,<id>``), "Newer events" for those after the first one shown
(``after=…``), so every matching event can be reached, however many there are, and each page
costs the same to read.
"""

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from erpauth.domain.audit import Position, list_events
from erpauth.storage.models import AuditEvent, Operator
from erpauth.web.access import SystemAdmin, Viewer, services_of
from erpauth.web.render import page

router = APIRouter(include_in_schema=False)

AUDIT = "/audit"
PAGE_SIZE = 50
# A position in a link: the event's time in UTC to the microsecond, and its id.
CURSOR = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6})Z,([0-9]{1,18})"
)
CURSOR_LAYOUT = "%Y-%m-%dT%H:%M:%S.%f"
BAD_CURSOR = (
    "This link to older or newer events is not valid. "
    "Apply the filters again to start from the newest events."
)
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

# Why something was refused or revoked (the ``reason`` of an event's details), in words. The
# code stays in the stored event, in `erpauth audit-export` and in the page's title attribute.
REASONS = {
    # Sign-in, password dialogs and the token endpoint
    "wrong_credentials": "Wrong e-mail or password",
    "wrong_current_password": "Wrong current password",
    "form_token": "Sign-in form expired or not from this site",
    "invalid_client": "Wrong client ID or client secret",
    "client_gone": "The API client no longer exists",
    "operator_gone": "The operator no longer exists",
    "operator_inactive": "The operator is deactivated",
    "no_api_permission": "The operator has no API permission",
    "license_api_disabled": "The company's license has no API access",
    # Refresh tokens
    "unknown_refresh_token": "Unknown refresh token",
    "other_client": "Refresh token of another API client",
    "revoked": "Refresh token revoked",
    "expired": "Refresh token expired",
    "password_changed": "The password was changed since the token was issued",
    "refresh_token_reused": "Refresh token used twice",
    # Revocations
    "other_company": "Token of another company",
    "revoked_by_client": "Revoked by the integration",
    "revoked_by_operator": "Revoked by the operator (User Settings → Sessions)",
    "revoked_by_administrator": "Revoked by a System Administrator",
    "web_deleted": "Deleted by the operator (User Settings → API)",
    "web_regenerated": "Replaced by a regenerated token (User Settings → API)",
    "operator_deactivated": "The operator was deactivated",
    "api_permission_revoked": "API permission was revoked",
}


def reason_label(code: str) -> str:
    """A reason code in words; a code not named in ``REASONS`` is still made readable."""
    if code in REASONS:
        return REASONS[code]
    words = code.replace("_", " ").replace(".", " ").strip()
    return words[:1].upper() + words[1:] if words else code


@dataclass
class Filters:
    """The filters as typed (to show them again) and as understood (to query with)."""

    kind: str = ""
    operator: str = ""
    since: str = ""
    until: str = ""
    kind_value: str | None = None
    operator_id: uuid.UUID | None = None
    since_value: datetime | None = None
    until_value: datetime | None = None
    before: Position | None = None
    after: Position | None = None
    problems: dict[str, str] = field(default_factory=dict)

    def query(self, *, before: Position | None = None, after: Position | None = None) -> str:
        """The page's address with the same filters, from a position on (or the newest)."""
        typed = {"kind": self.kind, "operator": self.operator}
        typed |= {"since": self.since, "until": self.until}
        wanted = {key: value for key, value in typed.items() if value}
        if before is not None:
            wanted["before"] = cursor_text(before)
        if after is not None:
            wanted["after"] = cursor_text(after)
        return f"{AUDIT}?{urlencode(wanted, safe=':,')}" if wanted else AUDIT


@dataclass(frozen=True)
class Person:
    name: str
    email: str

    @property
    def label(self) -> str:
        return f"{self.name} ({self.email})"


@dataclass(frozen=True)
class Detail:
    """One detail of an event as shown: its name, its value in words, and the stored code
    behind those words when they differ (shown as a tooltip)."""

    key: str
    value: str
    code: str | None = None


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
    details: list[Detail]


@router.get(AUDIT)
def audit_page(
    request: Request,
    viewer: SystemAdmin,
    kind: str = "",
    operator: str = "",
    since: str = "",
    until: str = "",
    before: str = "",
    after: str = "",
) -> Response:
    services = services_of(request)
    with services.database.session() as session:
        people = _people(session, viewer)
        filters = _read_filters(kind, operator, since, until, people)
        _read_cursor(filters, before, after)
        kinds = _kinds(session, viewer, filters.kind_value)
        events: list[AuditEvent] = []
        newer = older = None
        if not filters.problems:
            events, newer, older = _page_of_events(session, viewer, filters)
        rows = [_row(event, people) for event in events]

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
        newest=filters.query() if newer is not None else None,
        newer=filters.query(after=newer) if newer is not None else None,
        older=filters.query(before=older) if older is not None else None,
        newest_shown=_to_the_second(events[0].occurred_at) if events else None,
        oldest_shown=_to_the_second(events[-1].occurred_at) if events else None,
    )


def _to_the_second(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return f"{moment.day} {moment:%b %Y, %H:%M:%S} UTC"


def _page_of_events(
    session: Session, viewer: Viewer, filters: Filters
) -> tuple[list[AuditEvent], Position | None, Position | None]:
    """The events of the page, newest first, and the positions the links to the newer and to
    the older events start from (None where there are none)."""

    def fetch(limit: int, **position: Position | None) -> list[AuditEvent]:
        return list_events(
            session,
            viewer.company_id,
            kind=filters.kind_value,
            operator_id=filters.operator_id,
            since=filters.since_value,
            until=filters.until_value,
            limit=limit,
            **position,
        )

    def older_than(event: AuditEvent) -> Position | None:
        return Position.of(event) if fetch(1, before=Position.of(event)) else None

    if filters.after is not None:
        events = fetch(PAGE_SIZE + 1, after=filters.after)
        if len(events) > PAGE_SIZE:
            events = events[1:]
            return events, Position.of(events[0]), older_than(events[-1])
        # Less than a page of newer events is left: show the newest page, a full one.
    elif filters.before is not None:
        events = fetch(PAGE_SIZE + 1, before=filters.before)
        older = Position.of(events[PAGE_SIZE - 1]) if len(events) > PAGE_SIZE else None
        events = events[:PAGE_SIZE]
        edge = Position.of(events[0]) if events else filters.before
        newer = edge if fetch(1, after=edge) else None
        return events, newer, older

    events = fetch(PAGE_SIZE + 1)
    older = Position.of(events[PAGE_SIZE - 1]) if len(events) > PAGE_SIZE else None
    return events[:PAGE_SIZE], None, older


def cursor_text(position: Position) -> str:
    """A position as a link carries it: ``2026-12-05T02:04:24.123456Z,1234``."""
    return f"{position.occurred_at.astimezone(UTC).strftime(CURSOR_LAYOUT)}Z,{position.id}"


def parse_cursor(text: str) -> Position | None:
    """The position a link names, or None if the text is not one."""
    found = CURSOR.fullmatch(text)
    if found is None:
        return None
    try:
        occurred_at = datetime.strptime(found.group(1), CURSOR_LAYOUT).replace(tzinfo=UTC)
    except ValueError:  # 2026-02-30, 25:00 and the like
        return None
    return Position(occurred_at, int(found.group(2)))


def _read_cursor(filters: Filters, before: str, after: str) -> None:
    if before and after:
        filters.problems["cursor"] = BAD_CURSOR
        return
    if before:
        filters.before = parse_cursor(before)
    if after:
        filters.after = parse_cursor(after)
    if (before and filters.before is None) or (after and filters.after is None):
        filters.problems["cursor"] = BAD_CURSOR


def _read_filters(
    kind: str,
    operator: str,
    since: str,
    until: str,
    people: dict[uuid.UUID, Person],
) -> Filters:
    filters = Filters(kind=kind[:64], operator=operator[:64], since=since[:32], until=until[:32])
    filters.kind_value = filters.kind or None
    if not filters.kind.isprintable():
        # No kind of event holds a control character, and PostgreSQL cannot compare a NUL.
        filters.kind_value = None
        filters.problems["kind"] = "There is no such kind of event."

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
            _detail(key, value)
            for key, value in sorted((event.detail or {}).items())
            if value is not None
        ],
    )


def _detail(key: str, value: Any) -> Detail:
    if key == "reason" and isinstance(value, str):
        return Detail(key, reason_label(value), value)
    return Detail(key, _plain(value))


def _plain(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)
