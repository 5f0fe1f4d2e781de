"""Bounded password hashing on threads of its own: a flood of sign-ins cannot stop the API from
answering, checks never outnumber the hashing threads, and each thread keeps argon2's working
memory between checks and gives it back when idle."""

import asyncio
import gc
import logging
import resource
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from erpauth.abuse import Saturated
from erpauth.abuse.hashing import HashingPool
from erpauth.security.argon2_memory import WorkingMemory
from erpauth.security.passwords import PasswordHasher
from tests.conftest import StartServer
from tests.support import TOKEN_PATH, make_settings

MIB = 1024 * 1024
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def hasher(tmp_path_factory: pytest.TempPathFactory) -> PasswordHasher:
    """The service's hasher, with its default (OWASP minimum) argon2 parameters."""
    return PasswordHasher(make_settings(tmp_path_factory.mktemp("hasher"), None))


@contextmanager
def pool_of(threads: int, queue_size: int, **options: float) -> Iterator[HashingPool]:
    pool = HashingPool(threads, queue_size, **{"wait_seconds": 30, **options})
    try:
        yield pool
    finally:
        pool.close()


def hold_thread(pool: HashingPool) -> tuple[threading.Thread, threading.Event]:
    """A caller whose check holds one hashing thread until the returned event is set."""
    entered, release = threading.Event(), threading.Event()

    def check(_: WorkingMemory) -> None:
        entered.set()
        release.wait(10)

    caller = threading.Thread(target=pool.run, args=(check,))
    caller.start()
    assert entered.wait(10)
    return caller, release


def test_a_check_beyond_the_running_and_waiting_bound_is_turned_away_at_once() -> None:
    with pool_of(threads=1, queue_size=0) as pool:
        holder, release = hold_thread(pool)
        ran = []

        started = time.monotonic()
        with pytest.raises(Saturated) as refused:
            pool.run(ran.append)
        waited = time.monotonic() - started
        release.set()
        holder.join()

        assert refused.value.headers["Retry-After"] == "1"
        assert waited < 1
        assert pool.run(lambda _: "free again") == "free again"
        assert ran == []


def test_a_waiting_check_runs_once_a_thread_frees() -> None:
    with pool_of(threads=1, queue_size=1) as pool:
        holder, release = hold_thread(pool)
        results = []
        waiter = threading.Thread(target=lambda: results.append(pool.run(lambda _: "ran")))
        waiter.start()
        time.sleep(0.1)
        assert results == []

        release.set()
        holder.join()
        waiter.join(10)

        assert results == ["ran"]


def test_a_check_that_waited_too_long_is_refused_and_never_runs() -> None:
    with pool_of(threads=1, queue_size=1, wait_seconds=0.2) as pool:
        holder, release = hold_thread(pool)
        ran = []

        with pytest.raises(Saturated) as refused:
            pool.run(ran.append)
        release.set()
        holder.join()
        pool.run(lambda _: None)  # the refused check was queued before this one

        assert refused.value.headers["Retry-After"] == "2"
        assert ran == []


def test_the_error_of_a_check_reaches_its_caller() -> None:
    def broken(_: WorkingMemory) -> None:
        raise ValueError("no such thing")

    with pool_of(threads=1, queue_size=0) as pool:
        with pytest.raises(ValueError, match="no such thing"):
            pool.run(broken)
        assert pool.run(lambda _: 42) == 42


def test_no_more_checks_run_at_once_than_the_pool_has_threads() -> None:
    running, most, lock = 0, 0, threading.Lock()
    threads_used: set[str] = set()

    def check(_: WorkingMemory) -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            threads_used.add(threading.current_thread().name)
        time.sleep(0.05)
        with lock:
            running -= 1

    with pool_of(threads=2, queue_size=20) as pool:
        callers = [threading.Thread(target=pool.run, args=(check,)) for _ in range(12)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(10)

    assert most == 2
    assert threads_used == {"hashing-0", "hashing-1"}


def test_from_the_event_loop_a_check_runs_on_a_hashing_thread_and_errors_reach_the_caller() -> None:
    def broken(_: WorkingMemory) -> None:
        raise ValueError("no such thing")

    with pool_of(threads=1, queue_size=0) as pool:
        name = asyncio.run(pool.run_async(lambda _: threading.current_thread().name))
        with pytest.raises(ValueError, match="no such thing"):
            asyncio.run(pool.run_async(broken))
        assert name == "hashing-0"


def test_from_the_event_loop_the_bounds_hold_and_the_loop_keeps_running() -> None:
    with pool_of(threads=1, queue_size=1, wait_seconds=0.3) as pool:
        holder, release = hold_thread(pool)
        ran: list[object] = []

        async def meanwhile() -> tuple[BaseException | None, BaseException | None, int]:
            ticks = 0

            async def tick() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            ticker = asyncio.ensure_future(tick())
            waited, beyond = await asyncio.gather(
                pool.run_async(ran.append), pool.run_async(ran.append), return_exceptions=True
            )
            ticker.cancel()
            return waited, beyond, ticks

        waited, beyond, ticks = asyncio.run(meanwhile())
        release.set()
        holder.join()
        pool.run(lambda _: None)  # the refused check was queued before this one

        # One was turned away at once (no room), one after waiting too long for a thread.
        assert sorted(error.headers["Retry-After"] for error in (waited, beyond)) == ["1", "2"]
        assert ran == []
        assert ticks >= 10, "the event loop was blocked while the checks waited"


def test_a_cancelled_caller_gives_up_its_waiting_check_and_its_place() -> None:
    with pool_of(threads=1, queue_size=1) as pool:
        holder, release = hold_thread(pool)
        ran: list[object] = []

        async def cancel_while_waiting() -> None:
            waiting = asyncio.ensure_future(pool.run_async(ran.append))
            await asyncio.sleep(0.1)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting

        asyncio.run(cancel_while_waiting())
        # Its place is free again: one more may wait while the thread is still held.
        waiter = threading.Thread(target=lambda: ran.append(pool.run(lambda _: "ran")))
        waiter.start()
        time.sleep(0.1)
        release.set()
        holder.join()
        waiter.join(10)

        assert ran == ["ran"]


def minor_faults() -> int:
    """Page faults of this thread so far: each is a page mapped in anew."""
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt


def mapped(address: int) -> bool:
    """Whether a mapping of this process starts at ``address``."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        if int(line.split("-", 1)[0], 16) == address:
            return True
    return False


def test_a_hashing_thread_checks_in_the_same_memory_without_mapping_it_again(
    hasher: PasswordHasher,
) -> None:
    stored = hasher.hash(PASSWORD)

    def three_checks(memory: WorkingMemory) -> list[tuple[bool, int, int | None]]:
        hasher.verify(stored, "a first check maps the memory", memory)
        checks = []
        for password in (PASSWORD, "wrong", "wrong again"):
            before = minor_faults()
            matched = hasher.verify(stored, password, memory)
            checks.append((matched, minor_faults() - before, memory.address))
        return checks

    with pool_of(threads=1, queue_size=0) as pool:
        checks = pool.run(three_checks)
        memory_kept = pool.kept_bytes

    assert [matched for matched, _, _ in checks] == [True, False, False]
    # A fresh 19 MiB mapping costs hundreds of faults with huge pages, thousands without.
    assert all(faults < 50 for _, faults, _ in checks), checks
    assert len({address for _, _, address in checks}) == 1
    assert memory_kept >= 19 * MIB


def test_the_working_memory_goes_back_to_the_system_once_the_pool_is_idle(
    hasher: PasswordHasher,
) -> None:
    stored = hasher.hash(PASSWORD)
    address = None

    def check(memory: WorkingMemory) -> bool:
        nonlocal address
        matched = hasher.verify(stored, PASSWORD, memory)
        address = memory.address
        return matched

    with pool_of(threads=1, queue_size=0, linger_seconds=0.3) as pool:
        assert pool.run(check)
        assert address is not None
        kept_while_busy, mapped_while_busy = pool.kept_bytes, mapped(address)
        time.sleep(1)
        kept_when_idle, mapped_when_idle = pool.kept_bytes, mapped(address)

        assert pool.run(check)  # and the next check maps it again

    assert kept_while_busy >= 19 * MIB and mapped_while_busy
    assert kept_when_idle == 0 and not mapped_when_idle


def test_closing_the_pool_ends_its_threads_and_frees_their_memory(hasher: PasswordHasher) -> None:
    stored = hasher.hash(PASSWORD)
    before = set(threading.enumerate())
    pool = HashingPool(2, 0, wait_seconds=30, linger_seconds=60)
    pool.run(lambda memory: hasher.verify(stored, "x", memory))
    started = set(threading.enumerate()) - before

    pool.close()

    assert len(started) == 2
    assert not any(thread.is_alive() for thread in started)
    assert pool.kept_bytes == 0
    with pytest.raises(RuntimeError):
        pool.run(lambda _: None)


def test_concurrent_grants_check_no_more_passwords_at_once_than_the_hashing_threads(
    start_server: StartServer,
) -> None:
    server = start_server(hashing_concurrency=1, hashing_queue=20)
    tenant = server.tenant()
    running, most, lock = 0, 0, threading.Lock()
    threads_used: set[str] = set()
    hasher = server.services.hasher
    real_verify = hasher.verify

    def counted_verify(*args: object) -> bool:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            threads_used.add(threading.current_thread().name)
        try:
            return real_verify(*args)  # type: ignore[arg-type]
        finally:
            with lock:
                running -= 1

    hasher.verify = counted_verify  # type: ignore[method-assignment]
    statuses: list[int] = []

    def sign_in(password: str) -> None:
        form = {"grant_type": "password", "username": tenant.operator.email, "password": password}
        with server.client() as http:
            response = http.post(
                TOKEN_PATH, auth=(tenant.client_id, tenant.primary_secret), data=form
            )
        statuses.append(response.status_code)

    passwords = [tenant.operator.password] * 5 + ["not the password"]
    callers = [threading.Thread(target=sign_in, args=(password,)) for password in passwords]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(60)

    assert sorted(statuses) == [200] * 5 + [400]
    assert most == 1
    assert threads_used == {"hashing-0"}


def test_the_api_keeps_answering_while_the_token_endpoint_is_flooded(
    start_server: StartServer,
) -> None:
    server = start_server(
        hashing_concurrency=1, hashing_queue=1, token_requests_per_client_per_minute=100_000
    )
    tenant = server.tenant(call_limit_per_minute=10_000)
    token = server.access_token(tenant)
    form = {
        "grant_type": "password",
        "username": tenant.operator.email,
        "password": tenant.operator.password,
    }
    stop = threading.Event()
    answers: list[tuple[int, str | None, str | None]] = []

    def flood() -> None:
        with server.client() as http:
            for _ in range(200):
                if stop.is_set():
                    return
                r = http.post(TOKEN_PATH, auth=(tenant.client_id, tenant.primary_secret), data=form)
                answers.append((r.status_code, r.json().get("error"), r.headers.get("retry-after")))

    flooders = [threading.Thread(target=flood) for _ in range(12)]
    for thread in flooders:
        thread.start()
    try:
        api = [server.me(token).status_code for _ in range(20)]
        flood_still_running = any(thread.is_alive() for thread in flooders)
    finally:
        stop.set()
        for thread in flooders:
            thread.join(60)

    assert api == [200] * 20
    assert flood_still_running, "the API calls must have overlapped the flood"
    assert {status for status, _, _ in answers} <= {200, 503}
    busy = [answer for answer in answers if answer[0] == 503]
    assert busy, "the flood should have saturated the hashing threads"
    assert all(error == "temporarily_unavailable" and retry for _, error, retry in busy)


def test_a_check_its_cancelled_caller_left_running_ends_without_an_unheeded_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The error of a check that runs on after its caller was cancelled is nobody's to raise:
    it must not surface later as asyncio's "exception was never retrieved" log."""
    entered = threading.Event()

    def failing(_: WorkingMemory) -> None:
        entered.set()
        time.sleep(0.2)
        raise ValueError("nobody waits for this")

    with pool_of(threads=1, queue_size=0) as pool:

        async def cancel_while_running() -> None:
            caller = asyncio.ensure_future(pool.run_async(failing))
            await asyncio.get_running_loop().run_in_executor(None, entered.wait, 10)
            caller.cancel()
            with pytest.raises(asyncio.CancelledError):
                await caller
            await asyncio.sleep(0.5)  # the check ends meanwhile

        with caplog.at_level(logging.ERROR, logger="asyncio"):
            asyncio.run(cancel_while_running())
            gc.collect()

        assert pool.run(lambda _: "free again") == "free again"
    assert "never retrieved" not in caplog.text
