"""The audit trail: the query the web view uses, the JSON-lines export, structured logs."""

import json
import logging
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Select, select, text
from sqlalchemy.orm import Session

from erpauth.domain import audit
from erpauth.domain.audit import Origin, Position
from erpauth.domain.operators import create_and_audit_operator, find_operator
from erpauth.logs import JsonFormatter
from erpauth.storage.models import AuditEvent, Company
from tests.support import TOKEN_PATH, LiveServer, Operator, Tenant


def add_event(
    live: LiveServer, tenant: Tenant, kind: str, at: datetime, operator: bool = True
) -> None:
    with live.services.database.session() as session:
        audit.record(
            session,
            kind,
            "success",
            Origin(ip_address="192.0.2.1", user_agent="test"),
            company_id=tenant.company_id,
            operator_id=tenant.operator.id if operator else None,
        )
        [event] = [new for new in session.new if isinstance(new, AuditEvent)]
        event.occurred_at = at


def test_list_events_returns_one_companys_events_newest_first(live: LiveServer) -> None:
    ours, theirs = live.tenant(), live.tenant()
    now = datetime.now(UTC)
    add_event(live, ours, "test.first", now - timedelta(minutes=2))
    add_event(live, ours, "test.second", now - timedelta(minutes=1))
    add_event(live, theirs, "test.first", now)

    with live.services.database.session() as session:
        kinds = [e.kind for e in audit.list_events(session, ours.company_id)]

    assert kinds[:2] == ["test.second", "test.first"]
    assert "company.create" not in kinds, "events without the company's id are not its trail"
    assert len([k for k in kinds if k.startswith("test.")]) == 2


def test_list_events_filters_by_kind_operator_and_time(live: LiveServer) -> None:
    tenant = live.tenant()
    now = datetime.now(UTC)
    add_event(live, tenant, "test.old", now - timedelta(hours=2))
    add_event(live, tenant, "test.new", now - timedelta(minutes=5))
    add_event(live, tenant, "test.new", now - timedelta(minutes=4), operator=False)

    with live.services.database.session() as session:
        by_kind = audit.list_events(session, tenant.company_id, kind="test.new")
        by_operator = audit.list_events(
            session, tenant.company_id, kind="test.new", operator_id=tenant.operator.id
        )
        recent = audit.list_events(session, tenant.company_id, since=now - timedelta(hours=1))
        older = audit.list_events(session, tenant.company_id, until=now - timedelta(hours=1))
        one = audit.list_events(session, tenant.company_id, limit=1)

    assert len(by_kind) == 2
    assert len(by_operator) == 1
    assert "test.old" not in {e.kind for e in recent}
    assert [e.kind for e in older] == ["test.old"]
    assert len(one) == 1


def test_list_events_pages_by_position_in_both_directions(live: LiveServer) -> None:
    tenant = live.tenant()
    at = datetime(2025, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)
    # Two events share a time: the id decides between them.
    for minutes, kind in [(1, "test.a"), (2, "test.b"), (2, "test.c"), (3, "test.d")]:
        add_event(live, tenant, kind, at + timedelta(minutes=minutes))

    with live.services.database.session() as session:

        def kinds(
            before: Position | None = None, after: Position | None = None, limit: int = 100
        ) -> list[str]:
            events = audit.list_events(
                session, tenant.company_id, since=at, limit=limit, before=before, after=after
            )
            return [event.kind for event in events]

        everything = audit.list_events(session, tenant.company_id, since=at)
        c = Position.of(next(e for e in everything if e.kind == "test.c"))
        b = Position.of(next(e for e in everything if e.kind == "test.b"))
        assert kinds() == ["test.d", "test.c", "test.b", "test.a"]
        assert kinds(before=c) == ["test.b", "test.a"]
        assert kinds(before=b) == ["test.a"]
        assert kinds(after=b) == ["test.d", "test.c"]
        assert kinds(after=c, limit=1) == ["test.d"]
        assert kinds(after=Position(at, 0), limit=2) == ["test.b", "test.a"], "the nearest two"
        assert kinds(before=c, limit=1) == ["test.b"]


def explained(live: LiveServer, backend: str, statement: Select[tuple[AuditEvent]]) -> str:
    engine = live.services.database.engine
    query = statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
    with engine.begin() as connection:
        if backend == "sqlite":
            rows = connection.execute(text(f"EXPLAIN QUERY PLAN {query}")).all()
            return "\n".join(str(row[-1]) for row in rows)
        # The test tables are small enough for a sequential scan and a sort to be cheapest;
        # forbid both, and see whether an index serves the range and the order.
        connection.execute(text("SET LOCAL enable_seqscan = off"))
        connection.execute(text("SET LOCAL enable_sort = off"))
        rows = connection.execute(text(f"EXPLAIN {query}")).all()
        return "\n".join(str(row[0]) for row in rows)


@pytest.mark.parametrize("direction", ["before", "after"])
def test_a_page_of_events_is_read_from_the_index_on_company_and_time(
    live: LiveServer, backend: str, direction: str
) -> None:
    tenant = live.tenant()
    position = Position(datetime(2025, 3, 1, tzinfo=UTC), 1234)
    statement = audit.events_statement(tenant.company_id, **{direction: position}).limit(51)

    plan = explained(live, backend, statement)

    assert "ix_audit_events_company_time" in plan, plan
    if backend == "sqlite":
        assert "TEMP B-TREE" not in plan, plan  # the index gives the order, ties by rowid
    else:
        assert "Index Cond: ((company_id = " in plan and "occurred_at" in plan, plan
        # Only the events of one time are sorted by id (Incremental Sort), never the trail.
        sorts = [line for line in plan.splitlines() if re.match(r"\s*(->\s+)?Sort\s+\(", line)]
        assert sorts == [], plan


def test_audit_export_writes_json_lines_filtered_by_company_kind_and_time(
    live: LiveServer,
) -> None:
    tenant, other = live.tenant(), live.tenant()
    now = datetime.now(UTC)
    add_event(live, tenant, "test.export", now - timedelta(days=2))
    add_event(live, tenant, "test.export", now - timedelta(minutes=1))
    add_event(live, other, "test.export", now)

    lines = run_cli(
        live,
        "audit-export",
        "--json",
        "--company",
        tenant.code,
        "--kind",
        "test.export",
        "--since",
        (now - timedelta(days=1)).replace(tzinfo=None).isoformat(),
    )

    events = [json.loads(line) for line in lines]
    assert len(events) == 1
    assert events[0]["kind"] == "test.export"
    assert events[0]["company_id"] == str(tenant.company_id)
    assert events[0]["operator_id"] == str(tenant.operator.id)
    assert events[0]["ip_address"] == "192.0.2.1"
    assert set(events[0]) >= {"occurred_at", "outcome", "client_id", "user_agent", "detail"}


def test_audit_export_of_refused_sign_ins_holds_no_password_or_secret(live: LiveServer) -> None:
    tenant = live.tenant()
    wrong = {
        "grant_type": "password",
        "username": tenant.operator.email,
        "password": "Wr0ng!pw-xyz",
    }
    with live.client() as http:
        http.post(
            "/authentication/v1/authentication/token",
            auth=(tenant.client_id, tenant.primary_secret),
            data=wrong,
        )
    token = live.access_token(tenant)

    output = "\n".join(run_cli(live, "audit-export", "--json", "--company", tenant.code))

    assert '"wrong_credentials"' in output
    for secret in ("Wr0ng!pw-xyz", tenant.operator.password, tenant.primary_secret, token):
        assert secret not in output


def test_security_log_lines_are_json_with_the_audit_fields_and_no_secrets(
    live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    tenant = live.tenant()
    with caplog.at_level(logging.INFO, logger="erpauth"):
        token = live.access_token(tenant)
        live.password_grant(tenant, secret="a-wrong-client-secret")

    lines = [
        json.loads(JsonFormatter().format(record))
        for record in caplog.records
        if record.name == "erpauth.security"
    ]
    issued = next(line for line in lines if line["event"] == "token.issue")
    assert issued["outcome"] == "success"
    assert issued["company_id"] == str(tenant.company_id)
    assert issued["operator_id"] == str(tenant.operator.id)
    assert issued["client_id"] == tenant.client_id
    assert issued["ip"] == "127.0.0.1"
    assert {"time", "level", "logger", "user_agent"} <= set(issued)
    text = json.dumps(lines)
    for secret in (token, tenant.primary_secret, tenant.operator.password, "a-wrong-client-secret"):
        assert secret not in text


def run_cli(live: LiveServer, *args: str) -> list[str]:
    env = {
        **os.environ,
        "ERPAUTH_DATABASE_URL": live.settings.resolved_database_url(),
        "ERPAUTH_DATA_DIR": str(live.settings.data_dir),
        "ERPAUTH_LOG_LEVEL": "WARNING",
    }
    result = subprocess.run(
        [sys.executable, "-m", "erpauth.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line.strip()]


def test_wrong_secret_for_a_real_client_id_lands_in_that_companys_trail(live: LiveServer) -> None:
    tenant = live.tenant()

    refused = live.password_grant(tenant, secret="a-guessed-secret")

    with live.services.database.session() as session:
        events = audit.list_events(session, tenant.company_id, kind="token.issue")
    assert refused.status_code == 401
    assert [(e.outcome, e.detail["reason"]) for e in events] == [("refused", "invalid_client")]


def test_each_password_grant_decision_leaves_one_row_in_the_companys_trail(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    closed = live.tenant(api_enabled=False)

    issued = live.password_grant(tenant)
    wrong = live.password_grant(
        tenant, Operator(tenant.operator.email, "not-the-password", tenant.operator.id)
    )
    license_closed = live.password_grant(closed)

    with live.services.database.session() as session:
        events = audit.list_events(session, tenant.company_id, kind="token.issue")
        closed_events = audit.list_events(session, closed.company_id, kind="token.issue")
    assert (issued.status_code, wrong.status_code, license_closed.status_code) == (200, 400, 400)
    assert sorted((e.outcome, e.detail.get("reason")) for e in events) == [
        ("refused", "wrong_credentials"),
        ("success", None),
    ]
    assert {e.operator_id for e in events} == {tenant.operator.id}
    assert [(e.outcome, e.detail["reason"], e.client_id) for e in closed_events] == [
        ("refused", "license_api_disabled", closed.client_id)
    ]


def test_an_unknown_client_id_is_audited_with_the_id_it_tried(live: LiveServer) -> None:
    tenant = live.tenant()
    made_up = f"no-such-client-{tenant.code}"

    with live.client() as http:
        refused = http.post(
            TOKEN_PATH,
            auth=(made_up, tenant.primary_secret),
            data={
                "grant_type": "password",
                "username": tenant.operator.email,
                "password": tenant.operator.password,
            },
        )

    with live.services.database.session() as session:
        rows = session.scalars(
            select(AuditEvent).where(
                AuditEvent.kind == "token.issue", AuditEvent.company_id.is_(None)
            )
        ).all()
    assert refused.status_code == 401
    tried = [row for row in rows if row.detail.get("attempted_client_id") == made_up]
    assert [(row.outcome, row.detail["reason"]) for row in tried] == [("refused", "invalid_client")]


def test_an_operator_and_its_create_event_are_committed_together(live: LiveServer) -> None:
    tenant = live.tenant()
    email = f"together.{tenant.code.lower()}@example.com"
    origin = Origin(ip_address="192.0.2.7", user_agent="test")

    def create(session: Session) -> None:
        create_and_audit_operator(
            session,
            live.services.hasher,
            session.get(Company, tenant.company_id),
            origin,
            email=email,
            password="a long enough password 1",
            api_permission=True,
            actor_id=tenant.admin.id,
            detail={"via": "test"},
        )

    with pytest.raises(RuntimeError), live.services.database.session() as session:
        create(session)
        raise RuntimeError("the rest of the change failed")
    with live.services.database.session() as session:
        assert find_operator(session, email) is None
    assert not [e for e in company_events(live, tenant) if e.kind == "operator.create"]

    with live.services.database.session() as session:
        create(session)
    with live.services.database.session() as session:
        operator_id = find_operator(session, email).id
    assert [
        (e.kind, e.outcome, e.actor_id, e.operator_id, e.ip_address, e.user_agent, e.detail)
        for e in company_events(live, tenant)
        if e.kind == "operator.create"
    ] == [
        (
            "operator.create",
            "success",
            tenant.admin.id,
            operator_id,
            "192.0.2.7",
            "test",
            {"via": "test"},
        )
    ]


def company_events(live: LiveServer, tenant: Tenant) -> list[AuditEvent]:
    with live.services.database.session() as session:
        return list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.company_id == tenant.company_id)
                .order_by(AuditEvent.id)
            )
        )


def test_audit_export_text_keeps_a_made_up_client_id_in_its_own_field(live: LiveServer) -> None:
    """Anyone can send a client ID with spaces and '=' in it; the readable export must not let
    it pose as another field of the line (an operator's id)."""
    tenant = live.tenant()
    made_up = f"{tenant.code} operator_id={tenant.admin.id}"  # kept whole: 64 characters at most

    with live.client() as http:
        refused = http.post(
            TOKEN_PATH,
            data={
                "grant_type": "password",
                "username": tenant.operator.email,
                "password": tenant.operator.password,
                "client_id": made_up,
                "client_secret": "guess",
            },
        )

    assert refused.status_code == 401
    lines = [
        line
        for line in run_cli(live, "audit-export", "--kind", "token.issue")
        if tenant.code in line
    ]
    assert len(lines) == 1
    assert f'attempted_client_id="{made_up}"' in lines[0]
    assert f" operator_id={tenant.admin.id}" not in lines[0].replace(f'"{made_up}"', "")
