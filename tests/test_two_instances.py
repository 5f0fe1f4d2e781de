"""Two erpauth processes on one database agree on every token, with no delay to wait out."""

import time
from collections.abc import Iterator
from functools import partial

import jwt
import pytest

from tests.lifecycle import TOKENS_PATH, bearer, cli_json, race, refresh, revoke, token_pair
from tests.support import LiveServer, live_server

KEY_PICKUP_SECONDS = 10


@pytest.fixture(scope="module")
def other(live: LiveServer) -> Iterator[LiveServer]:
    """A second server with its own engine, pool and key ring, on the same database."""
    with live_server(live.settings) as server:
        yield server


def test_token_revoked_through_one_instance_is_refused_by_the_other(
    live: LiveServer, other: LiveServer
) -> None:
    tenant = live.tenant()
    pair = token_pair(live, tenant)
    assert other.me(pair["access_token"]).status_code == 200

    assert revoke(other, tenant, pair["access_token"]).status_code == 200

    assert live.me(pair["access_token"]).status_code == 401


def test_session_revoked_through_one_instance_is_refused_by_the_other(
    live: LiveServer, other: LiveServer
) -> None:
    tenant = live.tenant()
    viewer = token_pair(live, tenant)["access_token"]
    target = token_pair(other, tenant)
    jti = jwt.decode(target["access_token"], options={"verify_signature": False})["jti"]

    with live.client() as http:
        assert http.delete(f"{TOKENS_PATH}/{jti}", headers=bearer(viewer)).status_code == 204

    assert other.me(target["access_token"]).status_code == 401
    assert refresh(other, tenant, target["refresh_token"]).status_code == 400


def test_refresh_token_reused_on_the_other_instance_revokes_the_family_on_both(
    live: LiveServer, other: LiveServer
) -> None:
    tenant = live.tenant()
    first = token_pair(live, tenant)
    second = refresh(live, tenant, first["refresh_token"]).json()

    replay = refresh(other, tenant, first["refresh_token"])

    assert replay.json()["error"] == "invalid_grant"
    assert live.me(second["access_token"]).status_code == 401
    assert other.me(second["access_token"]).status_code == 401


def test_concurrent_refreshes_on_two_instances_let_at_most_one_succeed(
    live: LiveServer, other: LiveServer
) -> None:
    tenant = live.tenant()

    for _ in range(6):
        presented = token_pair(live, tenant)["refresh_token"]
        responses = race(
            [partial(refresh, live, tenant, presented), partial(refresh, other, tenant, presented)]
        )

        assert sum(r.status_code == 200 for r in responses) <= 1
        assert all(r.status_code in (200, 400) for r in responses)


def test_key_rotated_through_the_cli_is_accepted_by_both_instances(
    live: LiveServer, other: LiveServer
) -> None:
    tenant = live.tenant()
    rotated = cli_json(live, "keys-rotate")
    live.services.keys.reload()  # stands in for the 30-second re-read
    token = token_pair(live, tenant)["access_token"]
    assert jwt.get_unverified_header(token)["kid"] == rotated["kid"]

    # The other instance has never seen this kid; it re-reads its keys when it meets one
    # (at most once a second), so it may take a moment to accept the token.
    deadline = time.monotonic() + KEY_PICKUP_SECONDS
    status = other.me(token).status_code
    while status != 200 and time.monotonic() < deadline:
        time.sleep(0.25)
        status = other.me(token).status_code

    assert status == 200
