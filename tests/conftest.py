"""Shared fixtures: a live erpauth server per database backend."""

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from tests.support import (
    LIMITS_KEY_PREFIX,
    POSTGRES_ADMIN_URL,
    REDIS_URL,
    LiveServer,
    live_server,
    make_settings,
    postgres_database,
)

BACKENDS = ["sqlite", "postgresql"]


def postgres_available() -> bool:
    try:
        engine = create_engine(POSTGRES_ADMIN_URL)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except OperationalError:
        return False


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql" and not postgres_available():
        if os.environ.get("ERPAUTH_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required but not reachable at {POSTGRES_ADMIN_URL}")
        pytest.skip("PostgreSQL is not reachable; set ERPAUTH_TEST_POSTGRES_URL")
    return request.param


@pytest.fixture(scope="session")
def database_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'erpauth.db'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture(scope="session")
def live(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One erpauth server per backend for the whole session; tests make their own tenants."""
    settings = make_settings(tmp_path_factory.mktemp("data"), database_url)
    with live_server(settings) as server:
        yield server


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The test Redis; the keys this run made are deleted at the end."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        if os.environ.get("ERPAUTH_TEST_REQUIRE_REDIS") == "1":
            pytest.fail(f"Redis is required but not reachable at {REDIS_URL}")
        pytest.skip(f"Redis is not reachable at {REDIS_URL}; set ERPAUTH_TEST_REDIS_URL")
    yield REDIS_URL
    for key in client.scan_iter(match=f"{LIMITS_KEY_PREFIX}*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture(params=["memory", "redis"])
def limits_storage(request: pytest.FixtureRequest) -> str | None:
    """Where limit counters live: None for this process's memory, else a Redis URL."""
    if request.param == "memory":
        return None
    return request.getfixturevalue("redis_url")


StartServer = Callable[..., LiveServer]


@pytest.fixture
def start_server(live: LiveServer, limits_storage: str | None) -> Iterator[StartServer]:
    """Starts servers with their own settings, on the session's database and counter storage.

    The servers of one test share their counters, and no other test's.
    """
    prefix = f"{LIMITS_KEY_PREFIX}-{secrets.token_hex(4)}"
    with ExitStack() as stack:

        def start(**overrides: object) -> LiveServer:
            settings = make_settings(
                live.settings.data_dir,
                live.settings.database_url,
                **({"redis_url": limits_storage, "limits_key_prefix": prefix} | overrides),
            )
            return stack.enter_context(live_server(settings))

        yield start
