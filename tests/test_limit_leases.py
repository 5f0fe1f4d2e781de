"""Limits counted through leases: busy keys skip the store, and no limit is ever exceeded.

Each ``Limiter`` below stands for one erpauth process; two of them on one Redis are two
processes sharing a limit.
"""

import asyncio
import secrets
import sys
import threading
import time
import types
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from limits import RateLimitItemPerSecond
from starlette.concurrency import run_in_threadpool

from erpauth.abuse import limits as limits_module
from erpauth.abuse.limits import LEASE_SHARE, CallLimits, Limit, Limiter
from erpauth.abuse.storage import Backend, CounterStore
from erpauth.abuse.trail import RepeatAudit
from erpauth.domain.tokens import TokenContext
from tests.support import LIMITS_KEY_PREFIX, inside_one_window, make_settings

T = TypeVar("T")


class CountingStore(CounterStore):
    """The real counter store, counting how often it is asked."""

    asked = 0

    def run(self, operation: Callable[[Backend], T], *, fail_open: bool) -> T | None:
        self.asked += 1
        return super().run(operation, fail_open=fail_open)


def _store(tmp_path: Path, redis_url: str | None, prefix: str) -> CountingStore:
    return CountingStore(
        make_settings(tmp_path, None, redis_url=redis_url, limits_key_prefix=prefix)
    )


@pytest.fixture
def prefix() -> str:
    return f"{LIMITS_KEY_PREFIX}-{secrets.token_hex(4)}"


def test_a_busy_key_asks_the_store_a_fraction_of_the_time(
    tmp_path: Path, limits_storage: str | None, prefix: str
) -> None:
    store = _store(tmp_path, limits_storage, prefix)
    limiter = Limiter(store)
    limit = Limit("test_busy", 100_000)

    usages = [limiter.hit(limit, "company", fail_open=False) for _ in range(5_000)]

    assert all(usage is not None and usage.allowed for usage in usages)
    # Leases double up to 1% of the limit (1,000 calls): about 20 trips for 5,000 calls.
    assert store.asked <= 30
    remaining = [usage.remaining for usage in usages if usage is not None]
    assert remaining == sorted(remaining, reverse=True)
    assert remaining[-1] == 100_000 - 5_000


def test_light_traffic_is_counted_one_call_at_a_time(
    tmp_path: Path, limits_storage: str | None, prefix: str
) -> None:
    store = _store(tmp_path, limits_storage, prefix)
    limiter = Limiter(store)
    limit = Limit("test_light", LEASE_SHARE - 1)  # 1% of it is less than one call

    usages = [limiter.hit(limit, "company", fail_open=False) for _ in range(LEASE_SHARE + 5)]

    assert store.asked >= LEASE_SHARE
    assert [usage.allowed for usage in usages if usage] == [True] * (LEASE_SHARE - 1) + [False] * 6


def test_processes_sharing_a_limit_never_admit_more_than_it(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    limit = Limit("test_shared", 2_000)
    first, second = (Limiter(_store(tmp_path, redis_url, prefix)) for _ in range(2))

    allowed = 0
    for _ in range(1_500):
        for limiter in (first, second):
            usage = limiter.hit(limit, "company", fail_open=False)
            assert usage is not None
            allowed += usage.allowed

    cap = limit.amount // LEASE_SHARE
    assert limit.amount - 2 * cap <= allowed <= limit.amount


def test_a_refusal_is_remembered_briefly_instead_of_asking_again(
    tmp_path: Path, limits_storage: str | None, prefix: str
) -> None:
    store = _store(tmp_path, limits_storage, prefix)
    limiter = Limiter(store)
    limit = Limit("test_refused", 2)
    admitted = [limiter.hit(limit, "client", fail_open=False) for _ in range(2)]
    assert [usage is not None and usage.allowed for usage in admitted] == [True, True]
    asked = store.asked

    refusals = [limiter.hit(limit, "client", fail_open=False) for _ in range(50)]

    assert all(usage is not None and not usage.allowed for usage in refusals)
    assert store.asked - asked == 1
    assert all(usage.remaining == 0 for usage in refusals if usage)


def test_keys_and_limits_keep_separate_leases(
    tmp_path: Path, limits_storage: str | None, prefix: str
) -> None:
    limiter = Limiter(_store(tmp_path, limits_storage, prefix))
    small, large = Limit("test_keys", 3), Limit("test_keys", 10_000)

    for _ in range(3):
        limiter.hit(small, "a", fail_open=False)
    usage_a = limiter.hit(small, "a", fail_open=False)
    usage_b = limiter.hit(small, "b", fail_open=False)
    usage_large = limiter.hit(large, "a", fail_open=False)

    assert usage_a is not None and not usage_a.allowed
    assert usage_b is not None and usage_b.allowed
    assert usage_large is not None and usage_large.allowed


def test_requests_that_find_a_lease_spent_together_take_one_new_lease(
    tmp_path: Path, limits_storage: str | None, prefix: str
) -> None:
    store = _store(tmp_path, limits_storage, prefix)
    limiter = Limiter(store)
    limit = Limit("test_together", 200_000)
    admitted = 0
    lock = threading.Lock()

    def worker() -> None:
        nonlocal admitted
        for _ in range(2_000):
            usage = limiter.hit(limit, "company", fail_open=False)
            assert usage is not None and usage.allowed
            with lock:
                admitted += 1

    threads = [threading.Thread(target=worker) for _ in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns often, as requests on a server do
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)

    item = RateLimitItemPerSecond(limit.amount, limit.seconds, namespace=limit.name)
    stats = store.run(
        lambda backend: backend.window.get_window_stats(item, "company"), fail_open=False
    )
    assert stats is not None
    counted = limit.amount - stats.remaining
    # Counted but not (yet) admitted: at most what this process holds, one lease.
    assert admitted == 16_000
    assert 0 <= counted - admitted <= limit.amount // LEASE_SHARE


def test_bursty_traffic_well_under_the_limit_is_never_refused(
    tmp_path: Path, limits_storage: str | None, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two processes; each second, each gets a burst of 64 calls, then a second with 1 call:
    # 3,900 calls in a minute against a limit of 6,000. The leases' clock is simulated (a
    # second passes between bursts); the counting window is real, so every call falls in it.
    now = [0.0]
    monkeypatch.setattr(
        limits_module, "time", types.SimpleNamespace(monotonic=lambda: now[0], time=time.time)
    )
    inside_one_window()
    store = _store(tmp_path, limits_storage, prefix)
    processes = [Limiter(store), Limiter(store)]
    limit = Limit("test_bursty", 6_000)

    refused = 0
    for second in range(60):
        burst = 64 if second % 2 == 0 else 1
        for limiter in processes:
            for call in range(burst):
                now[0] = second * 1.05 + call * 0.001
                usage = limiter.hit(limit, "company", fail_open=False)
                assert usage is not None
                refused += not usage.allowed

    assert (64 + 1) * 30 * len(processes) + 2 * limit.amount // LEASE_SHARE <= limit.amount
    assert refused == 0


def _token(call_limit: int) -> TokenContext:
    now = datetime.now(UTC)
    return TokenContext(
        jti=secrets.token_urlsafe(8),
        operator_id=uuid.uuid4(),
        email="operator@example.com",
        display_name="Operator",
        is_system_admin=False,
        company_id=uuid.uuid4(),
        company_name="Company",
        account_code="C1",
        client_id="client",
        scope="api",
        issued_at=now,
        expires_at=now + timedelta(hours=1),
        call_limit_per_minute=call_limit,
    )


class CountingThreads:
    """Starlette's thread pool as CallLimits uses it, counting the trips."""

    def __init__(self) -> None:
        self.trips = 0
        self.concurrent = 0
        self.most_concurrent = 0

    async def __call__(self, function: Callable[..., T], *args: object) -> T:
        self.trips += 1
        self.concurrent += 1
        self.most_concurrent = max(self.most_concurrent, self.concurrent)
        try:
            return await run_in_threadpool(function, *args)
        finally:
            self.concurrent -= 1


def _call_limits(store: CounterStore) -> CallLimits:
    # The audit trail is only written for refusals, which these tests do not make.
    return CallLimits(Limiter(store), RepeatAudit(store, None, 60))  # type: ignore[arg-type]


async def _together(calls: CallLimits, token: TokenContext, count: int) -> list:
    return await asyncio.gather(*(calls.hit_async(token) for _ in range(count)))


def test_api_calls_that_find_the_lease_spent_wait_for_one_trip_to_the_store(
    tmp_path: Path, limits_storage: str | None, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(tmp_path, limits_storage, prefix)
    threads = CountingThreads()
    monkeypatch.setattr(limits_module, "run_in_threadpool", threads)
    calls = _call_limits(store)
    token = _token(100_000)

    usages = asyncio.run(_together(calls, token, 500))

    assert all(usage is not None and usage.allowed for usage in usages)
    # Leases of 1, 2, 4, ... 256 calls: nine takes for 500 calls, one at a time.
    assert store.asked <= 10
    if limits_storage is None:
        assert threads.trips == 0  # memory counts on the event loop: nothing to wait for
    else:
        assert threads.trips == store.asked
        assert threads.most_concurrent == 1
    item = RateLimitItemPerSecond(100_000, 60, namespace="company_calls_per_minute")
    stats = store.run(
        lambda backend: backend.window.get_window_stats(item, str(token.company_id)),
        fail_open=False,
    )
    assert stats is not None
    # Every admitted call was counted; what is counted beyond them is held, at most a lease.
    counted = 100_000 - stats.remaining
    assert 500 <= counted <= 500 + 256


def test_api_calls_waiting_together_never_exceed_a_limit_shared_by_processes(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    inside_one_window()
    token = _token(300)
    processes = [_call_limits(_store(tmp_path, redis_url, prefix)) for _ in range(2)]

    async def load() -> list:
        bursts = [_together(calls, token, 40) for calls in processes for _ in range(5)]
        return [usage for burst in await asyncio.gather(*bursts) for usage in burst]

    usages = asyncio.run(load())

    assert all(usage is not None for usage in usages)
    allowed = sum(usage.allowed for usage in usages)
    # 400 calls against a limit of 300, from two processes: never above it, and below it
    # by no more than the calls each process took and did not use (1% of 300: 3 each).
    assert 300 - 2 * 3 <= allowed <= 300


def test_api_calls_fail_open_without_a_thread_while_redis_is_down(
    tmp_path: Path, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A port nothing listens on: the first take fails, and Redis is taken for down.
    store = _store(tmp_path, "redis://127.0.0.1:9/0", prefix)
    threads = CountingThreads()
    monkeypatch.setattr(limits_module, "run_in_threadpool", threads)
    calls = _call_limits(store)

    usages = asyncio.run(_together(calls, _token(100_000), 50))

    assert usages == [None] * 50  # not enforced, as docs/abuse.md says
    assert store.down()
    assert threads.trips == 1  # the one that found Redis gone; the others knew
