"""The Alembic migrations build exactly the schema the models describe."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from erpauth.storage.models import Base
from tests.support import LiveServer


def test_migrated_database_matches_the_models(live: LiveServer) -> None:
    with live.services.database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)

    assert differences == []
