"""Data the benchmark needs, written straight into the database it serves from."""

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select, text

from erpauth.domain.companies import get_company, set_token_policy
from erpauth.domain.operators import get_operator
from erpauth.domain.refresh_tokens import new_family_id
from erpauth.security.secrets import sha256_hex
from erpauth.services import Services
from erpauth.storage.models import AccessToken, RefreshToken


def open_call_limit(services: Services, account_code: str) -> None:
    """The demo company's call limit (200 a minute) would throttle the load itself."""
    with services.database.session() as session:
        company = get_company(session, account_code)
        set_token_policy(session, company, token_expiry_hours=24, call_limit_per_minute=1_000_000)


def mint_refresh_tokens(
    services: Services, operator_email: str, client_id: str, count: int, out: Path
) -> None:
    """``count`` fresh refresh tokens, one form body per line, for one-use-each load."""
    now = datetime.now(UTC)
    with services.database.session() as session:
        operator = get_operator(session, operator_email)
        rows, bodies = [], []
        for _ in range(count):
            token = secrets.token_urlsafe(48)
            rows.append(
                RefreshToken(
                    id=secrets.token_urlsafe(16),
                    token_hash=sha256_hex(token),
                    family_id=new_family_id(),
                    operator_id=operator.id,
                    company_id=operator.company_id,
                    client_id=client_id,
                    scope="api",
                    issued_at=now,
                    expires_at=now + timedelta(days=1),
                )
            )
            bodies.append(f"grant_type=refresh_token&refresh_token={token}")
        session.add_all(rows)
    out.write_text("\n".join(bodies) + "\n")


def count_access_tokens(services: Services) -> int:
    with services.database.session() as session:
        return int(session.scalar(select(func.count()).select_from(AccessToken)))


def grow_to_scale(
    services: Services, company_code: str, *, operators: int, tokens: int, start: int = 1
) -> None:
    """Adds ``operators`` operators and ``tokens`` access tokens with set-based SQL.

    Numbering begins at ``start`` so that it can be called again. PostgreSQL only.
    """
    with services.database.session() as session:
        company_id = get_company(session, company_code).id
        session.execute(
            text(
                """
                INSERT INTO operators (id, company_id, email, email_key, display_name,
                    password_hash, is_active, is_system_admin, api_permission,
                    password_changed_at, created_at, updated_at)
                SELECT md5('operator' || i)::uuid, :company_id,
                    'bulk' || i || '@bench.example', 'bulk' || i || '@bench.example',
                    'Bulk ' || i, 'not-a-hash', true, false, true, now(), now(), now()
                FROM generate_series(:start, :start + :operators - 1) AS i
                """
            ),
            {"company_id": company_id, "operators": operators, "start": start},
        )
        session.execute(
            text(
                """
                INSERT INTO access_tokens (jti, token_hash, hint, operator_id, company_id,
                    client_id, source, scope, issued_at, expires_at)
                SELECT 'bulk' || i, md5('a' || i) || md5('b' || i), 'bulk',
                    md5('operator' || (:start + i % :operators))::uuid, :company_id,
                    'bench', 'token_endpoint', 'api', now(), now() + interval '1 day'
                FROM generate_series(:start, :start + :tokens - 1) AS i
                """
            ),
            {"company_id": company_id, "operators": operators, "tokens": tokens, "start": start},
        )
    # VACUUM as well as ANALYZE: a million fresh rows otherwise set off autovacuum a little
    # later, in the middle of the load that measures them. A database in service has long
    # since been vacuumed.
    autocommit = services.database.engine.execution_options(isolation_level="AUTOCOMMIT")
    with autocommit.connect() as connection:
        connection.execute(text("VACUUM (ANALYZE) operators, access_tokens"))
