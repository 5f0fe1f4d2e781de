"""With PostgreSQL, a token's standing is kept per process and dropped on change notices.

These tests run on PostgreSQL only: SQLite has no notices, and there the standing is read on
every request (the other test modules cover that path on both databases).
"""

import asyncio
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import create_engine, event, text

from erpauth.config import Settings
from erpauth.domain.standing import Standing, StandingCache
from erpauth.storage.changes import APPLICATION_NAME, CHANNEL, ChangeFeed, libpq_url
from tests.conftest import postgres_available
from tests.lifecycle import cli_json, run_cli, token_pair
from tests.support import ME_PATH, LiveServer, live_server, make_settings, postgres_database

# The RateLimit-Policy field of an API answer, for a company's call limit.
CALL_POLICY = '"company_calls_per_minute";q=%d;w=60'


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    if not postgres_available():
        if os.environ.get("ERPAUTH_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL is required but not reachable")
        pytest.skip("the standing cache needs PostgreSQL")
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = make_settings(tmp_path_factory.mktemp("data"), database_url)
    with live_server(settings) as live:
        _wait_for(lambda: live.services.changes is not None and live.services.changes.live)
        yield live


@pytest.fixture
def statements(server: LiveServer) -> Iterator[list[str]]:
    """The SQL statements the bearer check's connection pool sends while the test runs."""
    engine = server.services.database.async_autocommit
    assert engine is not None
    sent: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        sent.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    yield sent
    event.remove(engine.sync_engine, "before_cursor_execute", record)


def _wait_for(condition: object, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def _sql(server: LiveServer, statement: str, **params: object) -> None:
    """Runs SQL on a connection of its own, as someone with psql would."""
    engine = create_engine(server.settings.resolved_database_url())
    with engine.begin() as connection:
        connection.execute(text(statement), params)
    engine.dispose()


def test_a_token_checked_once_is_then_checked_without_a_query(
    server: LiveServer, statements: list[str]
) -> None:
    tenant = server.tenant()
    token = server.access_token(tenant)

    assert server.me(token).status_code == 200
    read_first = len(statements)
    second = server.me(token)

    assert read_first >= 1
    assert second.status_code == 200
    assert statements[read_first:] == []
    assert second.json()["operator"]["email"] == tenant.operator.email


def test_revoking_through_another_process_counts_on_the_next_request(
    server: LiveServer,
) -> None:
    tenant = server.tenant()
    token = server.access_token(tenant)
    assert server.me(token).status_code == 200

    cli_json(server, "operator-revoke-tokens", tenant.operator.email)

    refused = server.me(token)
    assert refused.status_code == 401
    assert "revoked" in refused.json()["error_description"]


def test_a_change_made_with_plain_sql_counts_on_the_next_request(server: LiveServer) -> None:
    tenant = server.tenant()
    token = server.access_token(tenant)
    assert server.me(token).status_code == 200

    _sql(server, "UPDATE operators SET is_active = false WHERE id = :id", id=tenant.operator.id)

    refused = server.me(token)
    assert refused.status_code == 401
    assert "deactivated" in refused.json()["error_description"]


def test_closing_the_license_counts_on_the_next_request(server: LiveServer) -> None:
    tenant = server.tenant()
    token = server.access_token(tenant)
    assert server.me(token).status_code == 200

    done = run_cli(server, "company-license", "--code", tenant.code, "--api", "off")
    assert done.returncode == 0, done.stderr

    refused = server.me(token)
    assert refused.status_code == 401
    assert "license" in refused.json()["error_description"]


def test_withdrawn_api_permission_counts_on_the_next_request(server: LiveServer) -> None:
    tenant = server.tenant()
    token = server.access_token(tenant)
    assert server.me(token).status_code == 200

    _sql(
        server,
        "UPDATE operators SET api_permission = false WHERE id = :id",
        id=tenant.operator.id,
    )

    refused = server.me(token)
    assert refused.status_code == 401
    assert "API permission" in refused.json()["error_description"]


def test_a_new_call_limit_counts_on_the_next_request(server: LiveServer) -> None:
    tenant = server.tenant(call_limit_per_minute=200)
    token = server.access_token(tenant)
    assert server.me(token).headers["RateLimit-Policy"] == CALL_POLICY % 200

    done = run_cli(
        server,
        "company-policy",
        "--code",
        tenant.code,
        "--token-expiry-hours",
        "24",
        "--call-limit",
        "7",
    )
    assert done.returncode == 0, done.stderr

    assert server.me(token).headers["RateLimit-Policy"] == CALL_POLICY % 7


def test_retiring_a_key_ends_its_tokens_without_waiting_for_a_reload(
    server: LiveServer,
) -> None:
    tenant = server.tenant()
    old_token = token_pair(server, tenant)["access_token"]
    assert server.me(old_token).status_code == 200
    old_kid = server.services.keys.signing_key().kid

    cli_json(server, "keys-rotate")
    done = run_cli(server, "keys-retire", old_kid)
    assert done.returncode == 0, done.stderr

    # The reload runs beside the request path; it takes a moment, not the 30-second period.
    _wait_for(lambda: server.me(old_token).status_code == 401, seconds=5)


def test_when_notices_stop_the_standing_is_read_from_the_database(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    feed = server.services.changes
    assert feed is not None
    tenant = server.tenant()
    token = server.access_token(tenant)
    assert server.me(token).status_code == 200
    assert server.services.tokens.standing.get(token) is not None

    with caplog.at_level(logging.WARNING, logger="erpauth.changes"):
        _sql(
            server,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = :name",
            name=APPLICATION_NAME,
        )
        _wait_for(lambda: any("interrupted" in r.getMessage() for r in caplog.records))

    # Whether the feed is back yet or not, nothing from before the break is trusted.
    assert server.services.tokens.standing.get(token) is None
    _sql(
        server,
        "UPDATE access_tokens SET revoked_at = now() WHERE operator_id = :id",
        id=tenant.operator.id,
    )
    assert server.me(token).status_code == 401
    _wait_for(lambda: feed.live)


def test_a_read_overtaken_by_a_notice_is_not_kept(database_url: str, tmp_path: Path) -> None:
    settings = Settings(database_url=database_url, data_dir=tmp_path)
    feed = ChangeFeed(libpq_url(settings.resolved_database_url()), heartbeat=0.2)
    cache = StandingCache(feed, max_age=60)

    async def scenario() -> tuple[bool, bool]:
        feed.start()
        while not feed.live:
            await asyncio.sleep(0.01)
        before = cache.generation
        # Another process revokes some token while this one is reading a standing.
        await asyncio.to_thread(_notify, settings.resolved_database_url(), "token:some-other-jti")
        while cache.generation == before:
            await asyncio.sleep(0.01)
        cache.put("token-a", Standing("jti-a", None, object(), 0.0, time.monotonic()), before)
        stale_kept = cache.get("token-a") is not None
        cache.put(
            "token-a", Standing("jti-a", None, object(), 0.0, time.monotonic()), cache.generation
        )
        fresh_kept = cache.get("token-a") is not None
        await feed.stop()
        return stale_kept, fresh_kept

    stale_kept, fresh_kept = asyncio.run(scenario())

    assert not stale_kept
    assert fresh_kept


def _notify(url: str, payload: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload}
        )
    engine.dispose()


def test_emptying_the_tokens_table_with_plain_sql_counts_on_the_next_request(
    server: LiveServer,
) -> None:
    # TRUNCATE fires no UPDATE or DELETE trigger: it needs triggers of its own.
    tenant = server.tenant()
    token = server.access_token(tenant)
    assert server.me(token).status_code == 200

    _sql(server, "TRUNCATE access_tokens CASCADE")

    refused = server.me(token)
    assert refused.status_code == 401
    assert "not known" in refused.json()["error_description"]


def test_a_token_renamed_with_plain_sql_is_no_longer_known(server: LiveServer) -> None:
    tenant = server.tenant()
    token = server.access_token(tenant)
    assert server.me(token).status_code == 200
    jti = server.services.tokens._verified_claims(token)["jti"]

    _sql(server, "UPDATE access_tokens SET jti = 'moved-' || jti WHERE jti = :jti", jti=jti)

    refused = server.me(token)
    assert refused.status_code == 401
    assert "not known" in refused.json()["error_description"]


def test_a_notice_read_during_the_heartbeat_counts_before_a_kept_entry_is_used(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A notice that arrives while the heartbeat query waits for its answer is read from the
    # socket by that query and held by psycopg until the feed listens again: the socket
    # looks empty meanwhile. The database answers the heartbeat slowly here, as under load.
    heartbeats: list[float] = []
    execute = psycopg.AsyncConnection.execute

    async def slow_heartbeat(self: psycopg.AsyncConnection, query: object, *args: object) -> object:
        if isinstance(query, str) and query.startswith("SELECT pg_notify"):
            heartbeats.append(time.monotonic())
            query = "SELECT pg_sleep(0.6), " + query.removeprefix("SELECT ")
        return await execute(self, query, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(psycopg.AsyncConnection, "execute", slow_heartbeat)
    settings = Settings(database_url=database_url, data_dir=tmp_path)
    feed = ChangeFeed(libpq_url(settings.resolved_database_url()), heartbeat=1.0)
    cache = StandingCache(feed, max_age=60)

    async def served_after_revocation() -> bool:
        feed.start()
        while not feed.live:
            await asyncio.sleep(0.01)
        cache.put(
            "token-a", Standing("jti-a", None, object(), 0.0, time.monotonic()), cache.generation
        )
        before = len(heartbeats)
        deadline = time.monotonic() + 5
        while len(heartbeats) == before:
            assert time.monotonic() < deadline, "no heartbeat"
            await asyncio.sleep(0.005)
        await asyncio.to_thread(_notify, settings.resolved_database_url(), "token:jti-a")
        await asyncio.sleep(0.1)  # the notice reaches this process; the heartbeat still waits
        assert time.monotonic() - heartbeats[-1] < 0.5, "the heartbeat answered too soon"
        # What the bearer check does with a kept entry.
        served = cache.get("token-a") is not None and (
            not cache.behind() or (await cache.catch_up() and cache.get("token-a") is not None)
        )
        await feed.stop()
        return served

    assert not asyncio.run(served_after_revocation())


def test_a_token_with_an_unknown_key_does_not_stall_other_requests_while_keys_load(
    server: LiveServer,
) -> None:
    # A token naming a kid this process has not seen makes it reload its keys. While that
    # read waits (here on a lock someone holds on signing_keys), other requests must go on.
    tenant = server.tenant()
    token = server.access_token(tenant)
    assert server.me(token).status_code == 200  # kept: answered without the database
    forged = jwt.encode(
        {"sub": "x", "jti": "x"},
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": "unknown-" + os.urandom(4).hex()},
    )
    keys = server.services.keys
    _wait_for(lambda: time.monotonic() - keys._loaded_at > 1.5, seconds=5)

    engine = create_engine(server.settings.resolved_database_url())
    forged_answer: list[int] = []
    try:
        with engine.begin() as locker:
            locker.execute(text("LOCK TABLE signing_keys IN ACCESS EXCLUSIVE MODE"))
            sender = threading.Thread(
                target=lambda: forged_answer.append(server.me(forged).status_code), daemon=True
            )
            sender.start()
            time.sleep(0.3)  # the forged token's request is waiting for the keys
            with httpx.Client(base_url=server.url, timeout=2) as http:
                try:
                    answer = http.get(ME_PATH, headers={"Authorization": f"Bearer {token}"})
                    status = answer.status_code
                except httpx.TimeoutException:
                    status = None
        sender.join(timeout=10)
    finally:
        engine.dispose()

    assert status == 200
    assert forged_answer == [401]


def test_a_feed_whose_notices_do_not_arrive_is_never_trusted(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As behind a pooler in transaction mode: the connection answers, notices never come.
    execute = psycopg.AsyncConnection.execute

    async def swallowed(self: psycopg.AsyncConnection, query: object, *args: object) -> object:
        if isinstance(query, str) and query.startswith("LISTEN"):
            query = "SELECT 1"
        return await execute(self, query, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(psycopg.AsyncConnection, "execute", swallowed)
    settings = Settings(database_url=database_url, data_dir=tmp_path)
    feed = ChangeFeed(libpq_url(settings.resolved_database_url()), heartbeat=0.2)

    async def ever_live() -> bool:
        feed.start()
        seen_live = False
        deadline = time.monotonic() + 1.5  # several heartbeats
        while time.monotonic() < deadline:
            seen_live = seen_live or feed.live
            await asyncio.sleep(0.005)
        await feed.stop()
        return seen_live

    assert not asyncio.run(ever_live())
