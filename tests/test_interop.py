"""A standard OAuth 2.0 client library gets tokens and uses them, over real HTTP."""

import subprocess
import sys

import pytest
from authlib.integrations.httpx_client import OAuth2Client

from tests.support import ME_PATH, TOKEN_PATH, LiveServer


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
def test_authlib_client_performs_the_password_grant(live: LiveServer, auth_method: str) -> None:
    tenant = live.tenant()

    with OAuth2Client(
        client_id=tenant.client_id,
        client_secret=tenant.primary_secret,
        token_endpoint_auth_method=auth_method,
        base_url=live.url,
    ) as client:
        token = client.fetch_token(
            live.url + TOKEN_PATH,
            username=tenant.operator.email,
            password=tenant.operator.password,
        )
        me = client.get(ME_PATH)

    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 24 * 3600
    assert me.status_code == 200
    assert me.json()["operator"]["email"] == tenant.operator.email


def test_authlib_client_surfaces_invalid_grant(live: LiveServer) -> None:
    from authlib.integrations.base_client.errors import OAuthError

    tenant = live.tenant()

    client = OAuth2Client(client_id=tenant.client_id, client_secret=tenant.primary_secret)
    with client, pytest.raises(OAuthError) as caught:
        client.fetch_token(
            live.url + TOKEN_PATH, username=tenant.operator.email, password="wrong-password"
        )

    assert caught.value.error == "invalid_grant"


def test_authlib_client_is_imported_without_a_deprecation_warning() -> None:
    """Authlib's httpx client warns on import when it falls back to httpx instead of httpx2."""
    done = subprocess.run(
        [sys.executable, "-c", "import authlib.integrations.httpx_client"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
