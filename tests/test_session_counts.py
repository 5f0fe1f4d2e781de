"""The Users page counts each operator's sessions in two queries, as the Tokens page lists them."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import event, update

from erpauth.domain.sessions import count_sessions, list_tokens
from erpauth.domain.tokens import revoke_access_token
from erpauth.storage.models import AccessToken, RefreshToken
from tests.support import TOKEN_PATH, LiveServer, Tenant


def token_pair(live: LiveServer, tenant: Tenant, role: str = "operator") -> dict:
    response = live.password_grant(tenant, tenant.operators[role])
    assert response.status_code == 200, response.text
    return response.json()


def refresh(live: LiveServer, tenant: Tenant, refresh_token: str) -> dict:
    with live.client() as http:
        response = http.post(
            TOKEN_PATH,
            auth=(tenant.client_id, tenant.primary_secret),
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        )
    assert response.status_code == 200, response.text
    return response.json()


def jti_of(live: LiveServer, token: str) -> str:
    return live.services.tokens._verified_claims(token)["jti"]


def test_counts_agree_with_the_listing_in_every_state_a_session_can_be_in(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    other_company = live.tenant()
    idle = live.add_operator(tenant, "idle")
    past = datetime.now(UTC) - timedelta(minutes=5)

    token_pair(live, tenant)  # listed
    revoked = token_pair(live, tenant)  # revoked: not listed
    expired_kept = token_pair(live, tenant)  # expired, refresh token live: listed once
    expired_dead = token_pair(live, tenant)  # expired, refresh token revoked: not listed
    rotated = token_pair(live, tenant)  # refreshed: old and new access token both listed
    refresh(live, tenant, rotated["refresh_token"])
    twice_expired = token_pair(live, tenant)  # refreshed, both access tokens expired: once
    twice_expired_next = refresh(live, tenant, twice_expired["refresh_token"])
    token_pair(live, tenant, "admin")
    token_pair(live, other_company)

    expire = [expired_kept, expired_dead, twice_expired, twice_expired_next]
    with live.services.database.session() as session:
        revoke_access_token(session, jti_of(live, revoked["access_token"]), "test")
        session.execute(
            update(AccessToken)
            .where(AccessToken.jti.in_([jti_of(live, t["access_token"]) for t in expire]))
            .values(expires_at=past)
        )
        session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == _family(live, expired_dead))
            .values(revoked_at=past, revoked_reason="test")
        )

    with live.services.database.session() as session:
        counts = count_sessions(session, tenant.company_id)
        listed = {
            role: len(list_tokens(session, operator.id))
            for role, operator in tenant.operators.items()
        }

    operator, admin = tenant.operator, tenant.admin
    assert listed == {"operator": 5, "admin": 1, "idle": 0}
    assert counts == {operator.id: 5, admin.id: 1}
    assert idle.id not in counts
    assert other_company.operator.id not in counts


def test_the_count_is_two_queries_however_many_operators(live: LiveServer) -> None:
    tenant = live.tenant()
    for number in range(5):
        live.add_operator(tenant, f"extra{number}", api_permission=True)
    for operator in tenant.operators.values():
        live.access_token(tenant, operator)

    statements: list[str] = []

    def seen(*args: object) -> None:
        statements.append(str(args[2]))

    engine = live.services.database.engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        with live.services.database.session() as session:
            counts = count_sessions(session, tenant.company_id)
    finally:
        event.remove(engine, "before_cursor_execute", seen)

    assert counts == {operator.id: 1 for operator in tenant.operators.values()}
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 2


def _family(live: LiveServer, pair: dict) -> str:
    with live.services.database.session() as session:
        row = session.get(AccessToken, jti_of(live, pair["access_token"]))
        assert row is not None and row.refresh_family_id is not None
        return row.refresh_family_id
