"""The Alembic migrations build exactly the schema the models describe."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, Engine, create_engine, event, text

from erpauth.storage.db import _sqlite_pragmas
from erpauth.storage.migrate import alembic_config
from erpauth.storage.models import Base
from tests.support import LiveServer, postgres_database


def test_migrated_database_matches_the_models(live: LiveServer) -> None:
    with live.services.database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)

    assert differences == []


def test_account_code_keys_are_filled_in_and_clashing_codes_stop_the_upgrade(
    backend: str, tmp_path: Path
) -> None:
    """Migration 0004 on a database that 0003 left with companies in it."""
    with _database(backend, tmp_path) as engine:
        config = alembic_config(engine)
        command.upgrade(config, "0003")
        with engine.begin() as connection:
            _add_company(connection, "acme")
            _add_company(connection, "Other.Co")
        command.upgrade(config, "head")
        with engine.connect() as connection:
            keys = connection.execute(
                text("SELECT account_code, account_code_key FROM companies ORDER BY 1")
            ).all()
        assert [tuple(row) for row in keys] == [("Other.Co", "OTHER.CO"), ("acme", "ACME")]

        command.downgrade(config, "0003")
        with engine.begin() as connection:
            _add_company(connection, "ACME")
        with pytest.raises(RuntimeError, match="differ only in case.*ACME"):
            command.upgrade(config, "head")
        with engine.connect() as connection:
            codes = connection.execute(text("SELECT account_code FROM companies")).scalars()
            assert sorted(codes) == ["ACME", "Other.Co", "acme"]  # nothing lost


def _add_company(connection: Connection, code: str) -> None:
    connection.execute(
        text(
            "INSERT INTO companies (id, name, account_code, api_enabled, token_expiry_hours, "
            "call_limit_per_minute, created_at, updated_at) VALUES "
            "(:id, :code, :code, false, 24, 200, :now, :now)"
        ),
        {"id": uuid.uuid4().hex, "code": code, "now": datetime.now(UTC)},
    )


@contextmanager
def _database(backend: str, tmp_path: Path) -> Iterator[Engine]:
    if backend == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'migrate.db'}")
        event.listen(engine, "connect", _sqlite_pragmas)
        try:
            yield engine
        finally:
            engine.dispose()
        return
    with postgres_database() as url:
        engine = create_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()
