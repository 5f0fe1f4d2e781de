"""Sessions API: an operator lists and revokes their tokens; an administrator, anyone's."""

import uuid
from datetime import UTC, datetime, timedelta

import jwt
from sqlalchemy import update

from erpauth.storage.models import AccessToken
from tests.lifecycle import TOKENS_PATH, audit_events, bearer, refresh, token_pair
from tests.support import LiveServer


def jti_of(token: str) -> str:
    return jwt.decode(token, options={"verify_signature": False})["jti"]


def operator_tokens_path(operator_id: uuid.UUID | str) -> str:
    return f"/authentication/v1/operators/{operator_id}/tokens"


def test_operator_lists_their_tokens_without_the_tokens_themselves(live: LiveServer) -> None:
    tenant = live.tenant(token_expiry_hours=5)
    older = token_pair(live, tenant)
    with live.client(headers={"User-Agent": "ledger-sync/2.1"}) as http:
        newer = http.post(
            "/authentication/v1/authentication/token",
            auth=(tenant.client_id, tenant.primary_secret),
            data={
                "grant_type": "password",
                "username": tenant.operator.email,
                "password": tenant.operator.password,
            },
        ).json()

    with live.client() as http:
        response = http.get(TOKENS_PATH, headers=bearer(older["access_token"]))

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["operator_id"] == str(tenant.operator.id)
    listed = {item["jti"]: item for item in body["tokens"]}
    assert set(listed) == {jti_of(older["access_token"]), jti_of(newer["access_token"])}
    mine = listed[jti_of(older["access_token"])]
    assert mine["current"] is True
    assert mine["source"] == "token_endpoint"
    assert mine["ip_address"] == "127.0.0.1"
    assert mine["hint"] == older["access_token"][-6:]
    assert mine["client_id"] == tenant.client_id
    assert mine["last_used_at"] is not None
    assert mine["refreshable_until"] is not None
    expires = datetime.fromisoformat(mine["expires_at"])
    issued = datetime.fromisoformat(mine["issued_at"])
    assert expires - issued == timedelta(hours=5)
    assert listed[jti_of(newer["access_token"])]["user_agent"] == "ledger-sync/2.1"
    assert listed[jti_of(newer["access_token"])]["current"] is False
    for secret in (older, newer):
        assert secret["access_token"] not in response.text
        assert secret["refresh_token"] not in response.text


def test_list_shows_only_the_callers_own_live_tokens(live: LiveServer) -> None:
    tenant = live.tenant()
    mine = token_pair(live, tenant)
    revoked = token_pair(live, tenant)
    theirs = token_pair(live, tenant, tenant.admin)
    with live.client() as http:
        http.delete(
            f"{TOKENS_PATH}/{jti_of(revoked['access_token'])}", headers=bearer(mine["access_token"])
        )

        listed = http.get(TOKENS_PATH, headers=bearer(mine["access_token"])).json()["tokens"]

    assert [item["jti"] for item in listed] == [jti_of(mine["access_token"])]
    assert jti_of(theirs["access_token"]) not in str(listed)


def test_expired_token_whose_session_can_still_refresh_is_listed(live: LiveServer) -> None:
    tenant = live.tenant()
    stale = token_pair(live, tenant)
    viewer = token_pair(live, tenant)
    with live.services.database.session() as session:
        session.execute(
            update(AccessToken)
            .where(AccessToken.jti == jti_of(stale["access_token"]))
            .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )

    with live.client() as http:
        listed = http.get(TOKENS_PATH, headers=bearer(viewer["access_token"])).json()["tokens"]

    stale_item = next(i for i in listed if i["jti"] == jti_of(stale["access_token"]))
    assert stale_item["refreshable_until"] is not None
    # Revoking it from the list ends the session it stands for: the refresh token too.
    with live.client() as http:
        gone = http.delete(
            f"{TOKENS_PATH}/{stale_item['jti']}", headers=bearer(viewer["access_token"])
        )
    assert gone.status_code == 204
    assert refresh(live, tenant, stale["refresh_token"]).status_code == 400


def test_refreshed_session_is_listed_once_by_its_live_tokens(live: LiveServer) -> None:
    tenant = live.tenant()
    first = token_pair(live, tenant)
    second = refresh(live, tenant, first["refresh_token"]).json()

    with live.client() as http:
        listed = http.get(TOKENS_PATH, headers=bearer(second["access_token"])).json()["tokens"]

    by_jti = {item["jti"]: item for item in listed}
    assert by_jti[jti_of(second["access_token"])]["source"] == "refresh"
    assert by_jti[jti_of(first["access_token"])]["source"] == "token_endpoint"


def test_operator_revokes_one_of_their_tokens_and_its_refresh_token(live: LiveServer) -> None:
    tenant = live.tenant()
    keep = token_pair(live, tenant)
    drop = token_pair(live, tenant)

    with live.client() as http:
        response = http.delete(
            f"{TOKENS_PATH}/{jti_of(drop['access_token'])}", headers=bearer(keep["access_token"])
        )

    assert response.status_code == 204
    assert live.me(drop["access_token"]).status_code == 401
    assert refresh(live, tenant, drop["refresh_token"]).json()["error"] == "invalid_grant"
    assert live.me(keep["access_token"]).status_code == 200
    [event] = audit_events(live, tenant.company_id, "token.revoke")
    assert event.actor_id == event.operator_id == tenant.operator.id


def test_operator_can_revoke_the_token_they_are_using(live: LiveServer) -> None:
    tenant = live.tenant()
    token = token_pair(live, tenant)["access_token"]

    with live.client() as http:
        response = http.delete(f"{TOKENS_PATH}/{jti_of(token)}", headers=bearer(token))

    assert response.status_code == 204
    assert live.me(token).status_code == 401


def test_operator_cannot_revoke_someone_elses_token(live: LiveServer) -> None:
    tenant = live.tenant()
    mine = token_pair(live, tenant)["access_token"]
    admins = token_pair(live, tenant, tenant.admin)["access_token"]

    with live.client() as http:
        response = http.delete(f"{TOKENS_PATH}/{jti_of(admins)}", headers=bearer(mine))
        unknown = http.delete(f"{TOKENS_PATH}/no-such-jti", headers=bearer(mine))

    assert response.status_code == unknown.status_code == 404
    assert response.json() == unknown.json()
    assert live.me(admins).status_code == 200


def test_admin_lists_and_revokes_an_operators_tokens(live: LiveServer) -> None:
    tenant = live.tenant()
    admin = token_pair(live, tenant, tenant.admin)["access_token"]
    operators = token_pair(live, tenant)

    with live.client() as http:
        listed = http.get(operator_tokens_path(tenant.operator.id), headers=bearer(admin))
        jti = jti_of(operators["access_token"])
        revoked = http.delete(
            f"{operator_tokens_path(tenant.operator.id)}/{jti}", headers=bearer(admin)
        )

    assert listed.status_code == 200
    assert [item["jti"] for item in listed.json()["tokens"]] == [jti]
    assert listed.json()["tokens"][0]["current"] is False
    assert revoked.status_code == 204
    assert live.me(operators["access_token"]).status_code == 401
    assert refresh(live, tenant, operators["refresh_token"]).status_code == 400
    [event] = audit_events(live, tenant.company_id, "token.revoke")
    assert event.actor_id == tenant.admin.id
    assert event.operator_id == tenant.operator.id


def test_admin_of_another_company_gets_404_for_our_operator(live: LiveServer) -> None:
    ours, theirs = live.tenant(), live.tenant()
    their_admin = token_pair(live, theirs, theirs.admin)["access_token"]
    our_token = token_pair(live, ours)["access_token"]

    with live.client() as http:
        path = operator_tokens_path(ours.operator.id)
        listed = http.get(path, headers=bearer(their_admin))
        revoked = http.delete(f"{path}/{jti_of(our_token)}", headers=bearer(their_admin))
        nobody = http.get(operator_tokens_path(uuid.uuid4()), headers=bearer(their_admin))
        garbage = http.get(operator_tokens_path("not-a-uuid"), headers=bearer(their_admin))

    assert listed.status_code == revoked.status_code == nobody.status_code == 404
    assert garbage.status_code == 404
    assert listed.json() == nobody.json()
    assert live.me(our_token).status_code == 200


def test_admin_cannot_revoke_through_the_wrong_operators_path(live: LiveServer) -> None:
    tenant = live.tenant()
    clerk = live.add_operator(tenant, "clerk", api_permission=True)
    admin = token_pair(live, tenant, tenant.admin)["access_token"]
    operators = token_pair(live, tenant)["access_token"]

    with live.client() as http:
        response = http.delete(
            f"{operator_tokens_path(clerk.id)}/{jti_of(operators)}", headers=bearer(admin)
        )

    assert response.status_code == 404
    assert live.me(operators).status_code == 200


def test_operator_without_admin_rights_cannot_manage_others_tokens(live: LiveServer) -> None:
    tenant = live.tenant()
    token = token_pair(live, tenant)["access_token"]

    with live.client() as http:
        response = http.get(operator_tokens_path(tenant.admin.id), headers=bearer(token))

    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"


def test_sessions_api_needs_a_valid_access_token(live: LiveServer) -> None:
    tenant = live.tenant()
    pair = token_pair(live, tenant)

    with live.client() as http:
        missing = http.get(TOKENS_PATH)
        with_refresh_token = http.get(TOKENS_PATH, headers=bearer(pair["refresh_token"]))

    assert missing.status_code == with_refresh_token.status_code == 401


def test_openapi_documents_the_sessions_api(live: LiveServer) -> None:
    with live.client() as http:
        paths = http.get("/openapi.json").json()["paths"]

    assert "get" in paths[TOKENS_PATH]
    assert "delete" in paths[TOKENS_PATH + "/{jti}"]
    assert "get" in paths["/authentication/v1/operators/{operator_id}/tokens"]
    assert "delete" in paths["/authentication/v1/operators/{operator_id}/tokens/{jti}"]
