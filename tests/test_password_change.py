"""A password change ends the operator's tokens; the CLI can force one, or just sign out."""

import secrets
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from erpauth.domain.operators import force_password_change, get_operator
from erpauth.oauth import password_fast_path
from erpauth.oauth import password_grant as password_grant_module
from erpauth.storage.models import WebSession
from tests.lifecycle import audit_events, cli_json, refresh, token_pair
from tests.support import LiveServer


def test_setting_a_password_with_the_cli_revokes_access_and_refresh_tokens(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    pair = token_pair(live, tenant)
    admin_pair = token_pair(live, tenant, tenant.admin)

    cli_json(live, "operator-set-password", tenant.operator.email)

    assert live.me(pair["access_token"]).status_code == 401
    assert refresh(live, tenant, pair["refresh_token"]).json()["error"] == "invalid_grant"
    # Only that operator's tokens end.
    assert live.me(admin_pair["access_token"]).status_code == 200


def test_forced_password_change_ends_tokens_and_web_sessions(live: LiveServer) -> None:
    tenant = live.tenant()
    pair = token_pair(live, tenant)
    _add_web_session(live, tenant.operator.id)

    result = cli_json(live, "operator-force-password-change", tenant.operator.email)

    assert live.me(pair["access_token"]).status_code == 401
    assert refresh(live, tenant, pair["refresh_token"]).status_code == 400
    assert live.password_grant(tenant).status_code == 400  # the old password
    tenant.operator.password = result["password"]
    assert live.password_grant(tenant).status_code == 200
    with live.services.database.session() as session:
        left = session.scalar(
            select(func.count())
            .select_from(WebSession)
            .where(WebSession.operator_id == tenant.operator.id)
        )
    assert left == 0
    [event] = audit_events(live, tenant.company_id, "password.change")
    assert event.detail["forced"] is True
    assert result["password"] not in str(event.detail)


def test_revoking_all_tokens_with_the_cli_keeps_the_password(live: LiveServer) -> None:
    tenant = live.tenant()
    first, second = token_pair(live, tenant), token_pair(live, tenant)

    result = cli_json(live, "operator-revoke-tokens", tenant.operator.email)

    assert result["access_tokens_revoked"] == 2
    assert result["refresh_tokens_revoked"] == 2
    for pair in (first, second):
        assert live.me(pair["access_token"]).status_code == 401
        assert refresh(live, tenant, pair["refresh_token"]).status_code == 400
    assert live.password_grant(tenant).status_code == 200


def _add_web_session(live: LiveServer, operator_id: object) -> None:
    now = datetime.now(UTC)
    with live.services.database.session() as session:
        session.add(
            WebSession(
                id_hash=secrets.token_hex(32),
                operator_id=operator_id,
                csrf_token=secrets.token_hex(16),
                created_at=now,
                last_seen_at=now,
                expires_at=now + timedelta(hours=1),
            )
        )


def test_password_grant_refused_when_the_password_changes_while_it_is_checked(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = live.tenant()
    guard = live.services.abuse.sign_in
    check, check_on_event_loop = guard.verify, guard.check_and_verify
    forced: list[str] = []

    def change_password() -> None:
        with live.services.database.session() as session:
            operator = get_operator(session, tenant.operator.email)
            forced.append(force_password_change(session, live.services.hasher, operator))

    def administrator_acts_meanwhile(*args: Any, **kwargs: Any) -> bool:
        password_ok = check(*args, **kwargs)
        change_password()
        return password_ok

    async def administrator_acts_meanwhile_async(*args: Any, **kwargs: Any) -> tuple[bool, bool]:
        checked = await check_on_event_loop(*args, **kwargs)
        await run_in_threadpool(change_password)
        return checked

    # The synchronous grant checks with verify; PostgreSQL's fast path with check_and_verify.
    monkeypatch.setattr(guard, "verify", administrator_acts_meanwhile)
    monkeypatch.setattr(guard, "check_and_verify", administrator_acts_meanwhile_async)
    response = live.password_grant(tenant)  # with the password the administrator replaced

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert forced, "the password was changed during the check"
    monkeypatch.undo()
    tenant.operator.password = forced[0]
    assert live.password_grant(tenant).status_code == 200


def test_password_change_during_a_grant_revokes_the_tokens_it_issues(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other order of the race: the change arrives after the grant has read the operator.

    The grant holds the operator's row from that read until it commits, so the change waits
    and its revocation then finds the new tokens; on SQLite the writers take turns. On
    PostgreSQL the fast path does its read, lock and inserts in one statement, which no change
    can come between; this is the synchronous half it falls back to.
    """
    monkeypatch.setattr(password_fast_path, "_plain", lambda *args: False)
    tenant = live.tenant()
    issue = password_grant_module.issue_token_pair
    changes: list[threading.Thread] = []

    def change_password() -> None:
        with live.services.database.session() as session:
            operator = get_operator(session, tenant.operator.email)
            force_password_change(session, live.services.hasher, operator)

    def administrator_acts_meanwhile(*args: Any, **kwargs: Any) -> Any:
        change = threading.Thread(target=change_password)
        changes.append(change)
        change.start()
        change.join(timeout=1)  # done at once, or waiting for this grant to commit
        return issue(*args, **kwargs)

    monkeypatch.setattr(password_grant_module, "issue_token_pair", administrator_acts_meanwhile)
    response = live.password_grant(tenant)
    [change] = changes
    change.join(timeout=30)
    assert not change.is_alive()

    if response.status_code == 200:
        tokens = response.json()
        assert live.me(tokens["access_token"]).status_code == 401
        assert refresh(live, tenant, tokens["refresh_token"]).status_code == 400
    else:
        assert response.json()["error"] in {"invalid_grant", "temporarily_unavailable"}
