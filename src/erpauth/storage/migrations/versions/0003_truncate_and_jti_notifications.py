"""change notices for TRUNCATE and for a token's jti changed (PostgreSQL only)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04

The triggers of 0002 fire on UPDATE and DELETE. ``TRUNCATE`` fires neither, so emptying
``access_tokens`` (or, with CASCADE, ``companies`` or ``operators``) with psql left every
process serving the tokens it had kept. A ``TRUNCATE`` of a watched table now announces the
table's name, which drops everything. And a token whose ``jti`` changes is no longer the token
that was kept under its old ``jti``: that column is watched too (the notice names the old one).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("access_tokens", "operators", "companies", "api_clients", "signing_keys")
TOKEN_COLUMNS_0002 = "revoked_at, expires_at, token_hash, operator_id, company_id, scope"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(
            f"""
            CREATE TRIGGER erpauth_changes_truncate AFTER TRUNCATE
            ON {table} FOR EACH STATEMENT EXECUTE FUNCTION erpauth_table_changed()
            """
        )
    _token_trigger(f"jti, {TOKEN_COLUMNS_0002}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS erpauth_changes_truncate ON {table}")
    _token_trigger(TOKEN_COLUMNS_0002)


def _token_trigger(columns: str) -> None:
    op.execute("DROP TRIGGER IF EXISTS erpauth_changes ON access_tokens")
    op.execute(
        f"""
        CREATE TRIGGER erpauth_changes AFTER UPDATE OF {columns} OR DELETE
        ON access_tokens FOR EACH ROW EXECUTE FUNCTION erpauth_token_changed()
        """
    )
