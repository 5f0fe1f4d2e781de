"""Signing key rotation with the CLI: rotate, list, retire; ``kid`` picks the key."""

import json
import threading
import time

import jwt
import pytest
from sqlalchemy import select

from erpauth.storage.models import AuditEvent
from tests.lifecycle import JWKS_PATH, cli_json, run_cli, token_pair
from tests.support import LiveServer


def jwks_kids(live: LiveServer) -> set[str]:
    with live.client() as http:
        return {key["kid"] for key in http.get(JWKS_PATH).json()["keys"]}


def kid_of(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


def test_rotation_signs_new_tokens_with_the_new_key_and_keeps_old_ones_valid(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    old_token = token_pair(live, tenant)["access_token"]

    rotated = cli_json(live, "keys-rotate")
    # The server re-reads keys every 30 seconds; the test does not wait for it.
    live.services.keys.reload()
    new_token = token_pair(live, tenant)["access_token"]

    assert rotated["status"] == "signing"
    assert kid_of(new_token) == rotated["kid"] != kid_of(old_token)
    assert live.me(old_token).status_code == 200
    assert live.me(new_token).status_code == 200
    assert {kid_of(old_token), rotated["kid"]} <= jwks_kids(live)


def test_retiring_the_previous_key_stops_the_tokens_it_signed(live: LiveServer) -> None:
    tenant = live.tenant()
    old_token = token_pair(live, tenant)["access_token"]
    old_kid = kid_of(old_token)
    cli_json(live, "keys-rotate")
    live.services.keys.reload()
    new_token = token_pair(live, tenant)["access_token"]

    retired = cli_json(live, "keys-retire", old_kid)
    live.services.keys.reload()

    assert retired["status"] == "retired"
    assert live.me(old_token).status_code == 401
    assert live.me(new_token).status_code == 200
    assert old_kid not in jwks_kids(live)
    assert kid_of(new_token) in jwks_kids(live)


def test_the_key_that_signs_now_cannot_be_retired(live: LiveServer) -> None:
    current = next(k for k in cli_json(live, "keys-list")["keys"] if k["status"] == "signing")

    done = run_cli(live, "keys-retire", current["kid"])

    assert done.returncode == 1
    assert "keys-rotate first" in json.loads(done.stdout)["error"]
    signing = [k for k in cli_json(live, "keys-list")["keys"] if k["status"] == "signing"]
    assert [k["kid"] for k in signing] == [current["kid"]]


def test_retiring_an_unknown_or_retired_key_fails_with_a_message(live: LiveServer) -> None:
    cli_json(live, "keys-rotate")
    live.services.keys.reload()
    verifying = next(k for k in cli_json(live, "keys-list")["keys"] if k["status"] == "verifying")
    cli_json(live, "keys-retire", verifying["kid"])

    unknown = run_cli(live, "keys-retire", "no-such-kid")
    again = run_cli(live, "keys-retire", verifying["kid"])

    assert unknown.returncode == again.returncode == 1
    assert "no signing key" in json.loads(unknown.stdout)["error"]
    assert "retired already" in json.loads(again.stdout)["error"]


def test_keys_list_shows_one_signing_key_newest_first(live: LiveServer) -> None:
    rotated = cli_json(live, "keys-rotate")

    keys = cli_json(live, "keys-list")["keys"]

    assert keys[0]["kid"] == rotated["kid"]
    assert keys[0]["status"] == "signing"
    assert [k["status"] for k in keys].count("signing") == 1
    assert all(k["algorithm"] == "ES256" for k in keys)
    assert all("private" not in json.dumps(k) for k in keys)


def test_key_rotation_and_retirement_are_audited(live: LiveServer) -> None:
    rotated = cli_json(live, "keys-rotate")
    live.services.keys.reload()
    previous = next(k for k in cli_json(live, "keys-list")["keys"] if k["status"] == "verifying")
    cli_json(live, "keys-retire", previous["kid"])

    with live.services.database.session() as session:
        events = session.execute(
            select(AuditEvent.kind, AuditEvent.detail).where(
                AuditEvent.kind.in_(["signing_key.rotate", "signing_key.retire"])
            )
        ).all()

    assert ("signing_key.rotate", rotated["kid"]) in {(k, d.get("kid")) for k, d in events}
    assert ("signing_key.retire", previous["kid"]) in {(k, d.get("kid")) for k, d in events}


def test_tokens_naming_unknown_kids_at_once_share_one_reload(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Anyone can send a token naming a kid that does not exist; many at once must not each
    # read the keys from the database.
    keys = live.services.keys
    reload = keys.reload
    reloads: list[float] = []

    def slow_reload() -> None:
        reloads.append(time.monotonic())
        time.sleep(0.2)
        reload()

    monkeypatch.setattr(keys, "reload", slow_reload)
    monkeypatch.setattr(keys, "_loaded_at", time.monotonic() - 5)
    start = threading.Barrier(8)

    def look_up() -> None:
        start.wait(timeout=10)
        assert keys.verification_key("no-such-kid") is None

    threads = [threading.Thread(target=look_up) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert len(reloads) == 1
