"""Bounded password hashing: a flood of sign-ins cannot stop the API from answering."""

import threading

import pytest

from erpauth.abuse import Saturated
from erpauth.abuse.hashing import HashingGate
from tests.conftest import StartServer
from tests.support import TOKEN_PATH


def hold_slot(gate: HashingGate) -> tuple[threading.Thread, threading.Event]:
    """A thread that holds one slot of the gate until the returned event is set."""
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        with gate.slot():
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert entered.wait(10)
    return thread, release


def test_a_check_beyond_the_running_and_waiting_bound_is_turned_away_at_once() -> None:
    gate = HashingGate(concurrency=1, queue=0, wait_seconds=30)
    holder, release = hold_slot(gate)

    with pytest.raises(Saturated) as refused, gate.slot():
        pass
    release.set()
    holder.join()

    assert refused.value.headers["Retry-After"] == "1"
    with gate.slot():
        pass


def test_a_waiting_check_runs_once_a_slot_frees() -> None:
    gate = HashingGate(concurrency=1, queue=1, wait_seconds=30)
    holder, release = hold_slot(gate)
    ran = threading.Event()

    def wait_then_run() -> None:
        with gate.slot():
            ran.set()

    waiter = threading.Thread(target=wait_then_run)
    waiter.start()
    assert not ran.is_set()
    release.set()
    holder.join()
    waiter.join(10)

    assert ran.is_set()


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
    assert busy, "the flood should have saturated the hashing gate"
    assert all(error == "temporarily_unavailable" and retry for _, error, retry in busy)
