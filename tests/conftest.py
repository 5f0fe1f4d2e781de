"""Shared fixtures: a live erpauth server per database backend."""

import os
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from tests.support import (
    POSTGRES_ADMIN_URL,
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
