"""change notifications for the standing cache (PostgreSQL only)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04

Triggers announce, on the ``erpauth_changes`` channel, every change that can alter whether an
access token may be used: a token revoked, expired or deleted (payload ``token:<jti>``); an
operator, company or API client changed (payload: the table's name); a signing key added,
retired or removed (``signing_keys``). NOTIFY is transactional, so the announcement is sent
when, and only when, the change commits, whoever made it: the service, the CLI, or someone
with psql. SQLite has no NOTIFY; there erpauth reads the standing on every request instead.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANNEL = "erpauth_changes"

# Columns whose change alters what the bearer check or the token endpoint decides. Columns
# that change on every use (last_used_at, updated_at) are left out on purpose: announcing them
# would empty the caches on every request.
WATCHED = {
    "access_tokens": "revoked_at, expires_at, token_hash, operator_id, company_id, scope",
    "operators": (
        "is_active, api_permission, company_id, email, display_name, is_system_admin, "
        "password_hash, password_changed_at"
    ),
    "companies": "api_enabled, call_limit_per_minute, token_expiry_hours, name, account_code",
    "api_clients": ("client_id, company_id, primary_secret_encrypted, secondary_secret_encrypted"),
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE FUNCTION erpauth_token_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', 'token:' || OLD.jti);
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        f"""
        CREATE FUNCTION erpauth_table_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);
            RETURN NULL;
        END $$
        """
    )
    # One notice per token, so that revoking one token evicts only that token.
    op.execute(
        f"""
        CREATE TRIGGER erpauth_changes AFTER UPDATE OF {WATCHED["access_tokens"]} OR DELETE
        ON access_tokens FOR EACH ROW EXECUTE FUNCTION erpauth_token_changed()
        """
    )
    # Rare changes, announced once per statement: each empties the caches.
    for table in ("operators", "companies", "api_clients"):
        op.execute(
            f"""
            CREATE TRIGGER erpauth_changes AFTER UPDATE OF {WATCHED[table]} OR DELETE
            ON {table} FOR EACH STATEMENT EXECUTE FUNCTION erpauth_table_changed()
            """
        )
    op.execute(
        """
        CREATE TRIGGER erpauth_changes AFTER INSERT OR UPDATE OR DELETE
        ON signing_keys FOR EACH STATEMENT EXECUTE FUNCTION erpauth_table_changed()
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in ("access_tokens", "operators", "companies", "api_clients", "signing_keys"):
        op.execute(f"DROP TRIGGER IF EXISTS erpauth_changes ON {table}")
    op.execute("DROP FUNCTION IF EXISTS erpauth_token_changed()")
    op.execute("DROP FUNCTION IF EXISTS erpauth_table_changed()")
