"""account codes are unique and looked up whatever their case

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

``ACME`` and ``acme`` could name two companies, and the CLI found a company only when its code
was typed in the case it was created with. Each company now also stores its code upper-cased,
under a unique index. A database that already holds two codes differing only in case cannot
take the index; the upgrade stops with their names instead, so that one can be renamed first.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    clashes = op.get_bind().execute(
        sa.text(
            "SELECT upper(account_code) FROM companies GROUP BY upper(account_code) "
            "HAVING count(*) > 1"
        )
    )
    codes = sorted(row[0] for row in clashes)
    if codes:
        raise RuntimeError(
            "account codes that differ only in case name more than one company: "
            f"{', '.join(codes)}; give all but one of each another code, then upgrade again"
        )

    # Plain ALTER TABLE on both databases. On SQLite a batch operation would copy and drop
    # the table, and dropping it deletes, by cascade, every operator and token of the company.
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a NOT NULL column only with a default; every row gets its key below.
        op.add_column(
            "companies",
            sa.Column("account_code_key", sa.String(64), nullable=False, server_default=""),
        )
    else:
        op.add_column("companies", sa.Column("account_code_key", sa.String(64), nullable=True))
    op.execute("UPDATE companies SET account_code_key = upper(account_code)")
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("companies", "account_code_key", nullable=False)
    op.create_index(
        op.f("ix_companies_account_code_key"), "companies", ["account_code_key"], unique=True
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_companies_account_code_key"), table_name="companies")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE companies DROP COLUMN account_code_key")
    else:
        op.drop_column("companies", "account_code_key")
