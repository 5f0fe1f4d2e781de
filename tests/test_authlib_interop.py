"""An off-the-shelf OAuth client (Authlib's httpx client) signs in, refreshes, revokes."""

import time
from collections.abc import Iterator

import pytest
from authlib.integrations.httpx_client import OAuth2Client

from tests.lifecycle import INTROSPECT_PATH, REVOKE_PATH, refresh
from tests.support import ME_PATH, TOKEN_PATH, LiveServer, Tenant


@pytest.fixture(autouse=True)
def _plain_http_on_loopback(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Authlib insists on HTTPS; the test server speaks plain HTTP on 127.0.0.1 only.
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    yield


def authlib_client(live: LiveServer, tenant: Tenant, method: str, updates: list) -> OAuth2Client:
    return OAuth2Client(
        client_id=tenant.client_id,
        client_secret=tenant.primary_secret,
        token_endpoint_auth_method=method,
        revocation_endpoint_auth_method=method,
        token_endpoint=live.url + TOKEN_PATH,
        update_token=lambda token, **_: updates.append(token),
        timeout=30,
    )


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_authlib_refreshes_an_expired_access_token_by_itself(live: LiveServer, method: str) -> None:
    tenant = live.tenant()
    updates: list = []
    with authlib_client(live, tenant, method, updates) as client:
        first = client.fetch_token(
            live.url + TOKEN_PATH,
            grant_type="password",
            username=tenant.operator.email,
            password=tenant.operator.password,
        )
        assert first["refresh_token"]
        # Make Authlib believe the access token has expired, so it refreshes first.
        client.token["expires_at"] = int(time.time()) - 60

        response = client.get(live.url + ME_PATH)

    assert response.status_code == 200, response.text
    assert response.json()["operator"]["email"] == tenant.operator.email
    [renewed] = updates
    assert renewed["access_token"] != first["access_token"]
    assert renewed["refresh_token"] != first["refresh_token"]
    # Rotation: the refresh token Authlib gave up is now spent.
    assert refresh(live, tenant, first["refresh_token"]).status_code == 400


def test_authlib_revokes_and_introspects_tokens(live: LiveServer) -> None:
    tenant = live.tenant()
    with authlib_client(live, tenant, "client_secret_basic", []) as client:
        token = client.fetch_token(
            live.url + TOKEN_PATH,
            grant_type="password",
            username=tenant.operator.email,
            password=tenant.operator.password,
        )
        before = client.introspect_token(
            live.url + INTROSPECT_PATH, token=token["access_token"]
        ).json()

        revoked = client.revoke_token(
            live.url + REVOKE_PATH, token=token["refresh_token"], token_type_hint="refresh_token"
        )
        after = client.introspect_token(
            live.url + INTROSPECT_PATH, token=token["access_token"]
        ).json()

    assert before["active"] is True
    assert before["username"] == tenant.operator.email
    assert revoked.status_code == 200
    assert after == {"active": False}
    assert live.me(token["access_token"]).status_code == 401
