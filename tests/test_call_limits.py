"""Each company's call limit on bearer-authenticated requests, counted in memory or Redis."""

import logging
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from erpauth.storage.models import AuditEvent
from tests.conftest import StartServer
from tests.support import LiveServer, inside_one_window


@pytest.fixture(autouse=True)
def _clear_of_a_window_edge() -> None:
    inside_one_window()


def me(server: LiveServer, token: str) -> httpx.Response:
    return server.me(token)


# The RateLimit field of the IETF draft: the policy's name, calls left, seconds to reset.
RATE_LIMIT = re.compile(r'"company_calls_per_minute";r=(\d+);t=(\d+)')
FIELDS = ("RateLimit", "RateLimit-Policy")


def remaining(response: httpx.Response) -> int:
    state = RATE_LIMIT.fullmatch(response.headers["RateLimit"])
    assert state, response.headers["RateLimit"]
    return int(state[1])


def reset_after(response: httpx.Response) -> int:
    state = RATE_LIMIT.fullmatch(response.headers["RateLimit"])
    assert state, response.headers["RateLimit"]
    return int(state[2])


def test_api_responses_carry_the_rate_limit_headers(start_server: StartServer) -> None:
    server = start_server()
    tenant = server.tenant(call_limit_per_minute=5)
    token = server.access_token(tenant)

    response = me(server, token)

    assert response.status_code == 200
    assert response.headers["RateLimit-Policy"] == '"company_calls_per_minute";q=5;w=60'
    assert remaining(response) == 4
    assert 0 <= reset_after(response) <= 60
    assert "RateLimit-Remaining" not in response.headers  # the expired draft's fields


def test_calls_beyond_the_company_limit_get_429_naming_the_limit(
    start_server: StartServer,
) -> None:
    server = start_server()
    tenant = server.tenant(call_limit_per_minute=3)
    token = server.access_token(tenant)

    allowed = [me(server, token) for _ in range(3)]
    refused = me(server, token)

    assert [r.status_code for r in allowed] == [200, 200, 200]
    assert [remaining(r) for r in allowed] == [2, 1, 0]
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert remaining(refused) == 0
    assert refused.headers["RateLimit-Policy"] == '"company_calls_per_minute";q=3;w=60'
    body = refused.json()
    assert body["error"] == "too_many_requests"
    assert body["limit"] == "company_calls_per_minute"
    assert "3 calls per minute" in body["error_description"]
    assert body["retry_after"] == int(refused.headers["Retry-After"])


def test_one_company_using_up_its_calls_leaves_another_company_alone(
    start_server: StartServer,
) -> None:
    server = start_server()
    busy, quiet = server.tenant(call_limit_per_minute=1), server.tenant(call_limit_per_minute=1)
    busy_token, quiet_token = server.access_token(busy), server.access_token(quiet)

    assert me(server, busy_token).status_code == 200
    assert me(server, busy_token).status_code == 429
    assert me(server, quiet_token).status_code == 200


def test_requests_with_an_invalid_token_do_not_use_up_a_company_call(
    start_server: StartServer,
) -> None:
    server = start_server()
    tenant = server.tenant(call_limit_per_minute=1)
    token = server.access_token(tenant)

    for _ in range(3):
        assert me(server, token[:-4] + "AAAA").status_code == 401

    assert me(server, token).status_code == 200


def test_two_servers_sharing_redis_share_the_call_count(
    start_server: StartServer, limits_storage: str | None
) -> None:
    if limits_storage is None:
        pytest.skip("memory counters belong to one process by design")
    first, second = start_server(), start_server()
    tenant = first.tenant(call_limit_per_minute=4)
    token = first.access_token(tenant)

    statuses = [me(server, token).status_code for server in (first, second, first, second)]
    refused_by_first = me(first, token)
    refused_by_second = me(second, token)

    assert statuses == [200, 200, 200, 200]
    assert refused_by_first.status_code == refused_by_second.status_code == 429


def test_a_rate_limit_hit_is_logged_each_time_and_audited_once_per_window(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_server()
    tenant = server.tenant(call_limit_per_minute=1)
    token = server.access_token(tenant)

    with caplog.at_level(logging.INFO, logger="erpauth"):
        statuses = [me(server, token).status_code for _ in range(4)]

    assert statuses == [200, 429, 429, 429]
    hits = [r for r in caplog.records if getattr(r, "fields", {}).get("event") == "ratelimit.hit"]
    assert len(hits) == 3
    assert hits[0].fields["company_id"] == str(tenant.company_id)
    with server.services.database.session() as session:
        events = session.scalars(
            select(AuditEvent).where(
                AuditEvent.company_id == tenant.company_id, AuditEvent.kind == "ratelimit.hit"
            )
        ).all()
    assert len(events) == 1
    assert events[0].outcome == "refused"
    assert events[0].operator_id == tenant.operator.id
    assert events[0].detail["limit"] == "company_calls_per_minute"


def test_the_api_keeps_answering_when_redis_is_unreachable(
    start_server: StartServer, limits_storage: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    if limits_storage is None:
        pytest.skip("this test is about Redis")
    server = start_server(redis_url=f"redis://127.0.0.1:{_free_port()}/0")
    tenant = server.tenant(call_limit_per_minute=1)
    token = server.access_token(tenant)

    with caplog.at_level(logging.INFO, logger="erpauth"):
        responses = [me(server, token) for _ in range(3)]

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert not any(name in r.headers for r in responses for name in FIELDS)
    down = [r for r in caplog.records if r.levelno == logging.ERROR and "redis" in r.getMessage()]
    assert down, "an error line must say that call limits are not enforced"


def test_the_api_keeps_answering_when_redis_goes_away_and_limits_return_with_it(
    start_server: StartServer, private_redis: "PrivateRedis"
) -> None:
    server = start_server(redis_url=private_redis.url, redis_retry_seconds=0)
    tenant = server.tenant(call_limit_per_minute=100)
    token = server.access_token(tenant)
    assert remaining(me(server, token)) == 99

    private_redis.stop()
    while_down = [me(server, token) for _ in range(3)]
    private_redis.start()
    after = me(server, token)

    assert [r.status_code for r in while_down] == [200, 200, 200]
    assert not any(name in r.headers for r in while_down for name in FIELDS)
    assert after.status_code == 200
    assert after.headers["RateLimit-Policy"] == '"company_calls_per_minute";q=100;w=60'


class PrivateRedis:
    """A redis-server of this test alone, on a free loopback port, that the test can stop."""

    def __init__(self, directory: str) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._directory = directory
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._directory,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("the private redis-server did not start")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None


@pytest.fixture
def private_redis(
    limits_storage: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrivateRedis]:
    if limits_storage is None:
        pytest.skip("this test is about Redis going away")
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(str(tmp_path_factory.mktemp("redis")))
    server.start()
    yield server
    server.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
