"""Token revocation (RFC 7009): client-authenticated, effective on the very next request."""

import pytest

from tests.lifecycle import REVOKE_PATH, audit_events, refresh, revoke, token_pair
from tests.support import LiveServer


def test_revoked_access_token_is_refused_on_the_next_request(live: LiveServer) -> None:
    tenant = live.tenant()
    token = token_pair(live, tenant)["access_token"]
    assert live.me(token).status_code == 200

    response = revoke(live, tenant, token)

    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["cache-control"] == "no-store"
    refused = live.me(token)
    assert refused.status_code == 401
    assert "revoked" in refused.headers["www-authenticate"]
    # The integrator is told what to do next, not only what happened.
    assert refused.json()["error_description"] == (
        "the access token has been revoked; get a new one by signing in again"
    )


def test_revoking_a_refresh_token_revokes_its_family_access_tokens(live: LiveServer) -> None:
    tenant = live.tenant()
    first = token_pair(live, tenant)
    second = refresh(live, tenant, first["refresh_token"]).json()
    other_session = token_pair(live, tenant)

    response = revoke(live, tenant, second["refresh_token"], token_type_hint="refresh_token")

    assert response.status_code == 200
    assert refresh(live, tenant, second["refresh_token"]).json()["error"] == "invalid_grant"
    assert live.me(first["access_token"]).status_code == 401
    assert live.me(second["access_token"]).status_code == 401
    assert live.me(other_session["access_token"]).status_code == 200


def test_revoking_an_access_token_leaves_its_refresh_token_usable(live: LiveServer) -> None:
    # RFC 7009 §2.1 leaves this to the server; erpauth revokes only what it is given.
    tenant = live.tenant()
    pair = token_pair(live, tenant)

    revoke(live, tenant, pair["access_token"])

    assert live.me(pair["access_token"]).status_code == 401
    assert refresh(live, tenant, pair["refresh_token"]).status_code == 200


@pytest.mark.parametrize("kind", ["access_token", "refresh_token"])
def test_a_wrong_token_type_hint_does_not_stop_revocation(live: LiveServer, kind: str) -> None:
    tenant = live.tenant()
    pair = token_pair(live, tenant)
    wrong_hint = "refresh_token" if kind == "access_token" else "access_token"

    response = revoke(live, tenant, pair[kind], token_type_hint=wrong_hint)

    assert response.status_code == 200
    assert live.me(pair["access_token"]).status_code == 401


def test_unknown_token_is_answered_with_200(live: LiveServer) -> None:
    tenant = live.tenant()

    response = revoke(live, tenant, "no-such-token", token_type_hint="something_else")

    assert response.status_code == 200


def test_client_cannot_revoke_another_companys_token(live: LiveServer) -> None:
    ours, theirs = live.tenant(), live.tenant()
    pair = token_pair(live, ours)

    by_access = revoke(live, theirs, pair["access_token"])
    by_refresh = revoke(live, theirs, pair["refresh_token"])

    # The same answer as for an unknown token, and nothing is revoked.
    assert by_access.status_code == by_refresh.status_code == 200
    assert live.me(pair["access_token"]).status_code == 200
    assert refresh(live, ours, pair["refresh_token"]).status_code == 200
    refused = audit_events(live, ours.company_id, "token.revoke")
    assert {(event.outcome, event.detail["reason"]) for event in refused} == {
        ("refused", "other_company")
    }


def test_revocation_needs_client_authentication(live: LiveServer) -> None:
    tenant = live.tenant()
    token = token_pair(live, tenant)["access_token"]

    with live.client() as http:
        anonymous = http.post(REVOKE_PATH, data={"token": token})
        wrong = http.post(REVOKE_PATH, auth=(tenant.client_id, "wrong"), data={"token": token})

    assert anonymous.status_code == wrong.status_code == 401
    assert anonymous.json()["error"] == wrong.json()["error"] == "invalid_client"
    assert wrong.headers["www-authenticate"].startswith("Basic ")
    assert live.me(token).status_code == 200


def test_revocation_with_client_credentials_in_the_body(live: LiveServer) -> None:
    tenant = live.tenant()
    token = token_pair(live, tenant)["access_token"]

    with live.client() as http:
        response = http.post(
            REVOKE_PATH,
            data={
                "token": token,
                "client_id": tenant.client_id,
                "client_secret": tenant.primary_secret,
            },
        )

    assert response.status_code == 200
    assert live.me(token).status_code == 401


def test_missing_token_parameter_is_invalid_request(live: LiveServer) -> None:
    tenant = live.tenant()

    with live.client() as http:
        response = http.post(
            REVOKE_PATH, auth=(tenant.client_id, tenant.primary_secret), data={"x": "1"}
        )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_revocation_is_recorded_without_the_token(live: LiveServer) -> None:
    tenant = live.tenant()
    pair = token_pair(live, tenant)

    revoke(live, tenant, pair["refresh_token"])

    [event] = audit_events(live, tenant.company_id, "token.revoke")
    assert event.outcome == "success"
    assert event.operator_id == tenant.operator.id
    assert event.detail["token_type"] == "refresh_token"
    assert event.detail["access_tokens_revoked"] == 1
    assert pair["refresh_token"] not in str(event.detail)


def test_revocation_path_matches_whatever_the_letter_case(live: LiveServer) -> None:
    tenant = live.tenant()
    token = token_pair(live, tenant)["access_token"]

    with live.client() as http:
        response = http.post(
            "/Authentication/V1/Authentication/Revoke",
            auth=(tenant.client_id, tenant.primary_secret),
            data={"token": token},
        )

    assert response.status_code == 200
    assert live.me(token).status_code == 401
