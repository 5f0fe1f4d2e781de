"""Request limits: each company's call limit, and the limits on getting a token or signing in.

Counting uses the sliding-window counter of the ``limits`` library: a request is allowed when
the calls of the current window plus the previous window's calls, weighted by how much of it
still overlaps, stay within the limit.

A busy key does not ask the counter store on every request. Each process takes calls from the
store in advance, a *lease*, and admits requests from it locally until it is spent or a second
old. Every admitted call was counted in the store before it was admitted, so a limit is never
exceeded, however many processes share it. Leases start at one call (one request, one count:
exact for light traffic) and double while a key keeps spending them, up to 1% of the limit and
a tenth of what the store has left; a lease that lapsed shrinks the next one to what was used,
and hands it what it did not use if the next one comes within a few seconds (those calls were
counted a little before they are made). Calls a process took and never used are lost to the
count, so a busy company can be refused a little before its limit.

On the event loop (``CallLimits.hit_async``), the requests that find a company's lease spent
wait for one of them to take the next from Redis in a worker thread, instead of each taking a
thread only to queue there for the same answer.
"""

import asyncio
import functools
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import NamedTuple

from limits import RateLimitItemPerSecond
from starlette.concurrency import run_in_threadpool

from erpauth.abuse.errors import Throttled
from erpauth.abuse.keys import key_part
from erpauth.abuse.storage import Backend, CounterStore
from erpauth.abuse.trail import RepeatAudit
from erpauth.config import Settings
from erpauth.domain.audit import Origin
from erpauth.domain.tokens import TokenContext

COMPANY_CALLS = "company_calls_per_minute"
TOKEN_REQUESTS_PER_IP = "token_requests_per_ip"
TOKEN_REQUESTS_PER_CLIENT = "token_requests_per_client"
SIGNIN_REQUESTS_PER_IP = "signin_requests_per_ip"


@dataclass(frozen=True)
class Limit:
    """So many requests per so many seconds, for each key (a company, an IP, a client)."""

    name: str
    amount: int
    seconds: int = 60
    # The policy (RateLimit-Policy) depends on the limit alone: encoded once, it goes out on
    # every API call.
    raw_policy: tuple[bytes, bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        policy = b'"%s";q=%d;w=%d' % (self.name.encode(), self.amount, self.seconds)
        object.__setattr__(self, "raw_policy", (b"ratelimit-policy", policy))

    def describe(self) -> str:
        per = "minute" if self.seconds == 60 else f"{self.seconds} seconds"
        return f"{self.amount} per {per}"


class Usage(NamedTuple):
    """Where one key stands against a limit, right after a request was counted.

    A named tuple: one is made for every API call.
    """

    limit: Limit
    allowed: bool
    remaining: int
    reset_after: int

    def headers(self) -> dict[str, str]:
        """The RateLimit-Policy and RateLimit fields of the IETF httpapi draft (draft-08 on).

        Both name the policy by the limit's name, the one a 429's ``limit`` gives: its quota
        ``q`` per window ``w`` seconds, and what is left of it, ``r``, and the seconds ``t``
        until calls free up again.
        """
        policy, state = (value.decode() for _, value in self.raw_headers())
        return {"RateLimit-Policy": policy, "RateLimit": state}

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """``headers()`` as ASGI header pairs."""
        name = self.limit.name.encode()
        state = b'"%s";r=%d;t=%d' % (name, self.remaining, self.reset_after)
        return [self.limit.raw_policy, (b"ratelimit", state)]


# How long a process may admit calls from what it took from the store in advance.
LEASE_SECONDS = 1.0
# A lease never holds more than this share of a limit, nor more than LEASE_CAP calls.
LEASE_SHARE = 100
LEASE_CAP = 10_000
# Nor more than this share of what the store had left when the process last asked.
REMAINING_SHARE = 10
# Calls a lapsed lease still held are kept for the next lease if it is taken this soon after:
# they were counted a few seconds before they are used, which a one-minute window hardly
# notices, and dropping them would waste what bursty traffic takes.
CARRY_SECONDS = 5.0


LeaseKey = tuple[str, int, int, str]  # limit name, amount, seconds; the key counted


@dataclass
class _Lease:
    """Calls one process took from the store for one key and may still admit on its own."""

    units: int
    size: int
    expires: float  # time.monotonic()
    store_remaining: int
    reset_at: float  # time.time()
    allowed: bool


class Limiter:
    """Counts requests against limits in the counter store, through per-process leases."""

    def __init__(self, store: CounterStore) -> None:
        self.store = self._store = store
        self._leases: dict[LeaseKey, _Lease] = {}
        # One taker per key at a time: requests that find a lease spent together must not
        # each take a new one from the store.
        self._takers: dict[LeaseKey, threading.Lock] = {}
        self._lock = threading.Lock()

    def hit(self, limit: Limit, key: str, *, fail_open: bool) -> Usage | None:
        """Counts one request; None only when the store is down and ``fail_open`` is asked.

        May wait for the counter store: call it off the event loop when the store is Redis.
        """
        usage = self.hit_locally(limit, key)
        if usage is not None:
            return usage
        lease_key = _lease_key(limit, key)
        with self._lock:
            taker = self._takers.setdefault(lease_key, threading.Lock())
        with taker:
            # The request that held the lock may have taken enough for this one too.
            usage = self.hit_locally(limit, key, wait=True)
            if usage is not None:
                return usage
            return self._take(limit, key, fail_open=fail_open)

    def hit_locally(self, limit: Limit, key: str, *, wait: bool = False) -> Usage | None:
        """Counts one request from this process's lease; None when the store must be asked.

        Without ``wait`` it never waits: safe on the event loop.
        """
        if not self._lock.acquire(wait):
            return None
        try:
            lease = self._leases.get(_lease_key(limit, key))
            if lease is None or lease.expires <= time.monotonic():
                return None
            if not lease.allowed:
                return _usage(limit, lease, allowed=False)
            if lease.units <= 0:
                return None
            lease.units -= 1
            return _usage(limit, lease, allowed=True)
        finally:
            self._lock.release()

    def _take(self, limit: Limit, key: str, *, fail_open: bool) -> Usage | None:
        """Takes a new lease for the key (called by its one taker), and counts one call."""
        size, carried = self._next_size(limit, key)
        if carried >= size:
            # What the lapsed lease still held covers this one: nothing to ask the store.
            return self._renew(limit, key, carried)

        item = RateLimitItemPerSecond(limit.amount, limit.seconds, namespace=limit.name)
        stored_key = key_part(key)
        wanted = size - carried

        def count(backend: Backend) -> tuple[bool, int, int, float]:
            took = wanted
            allowed = backend.window.hit(item, stored_key, cost=wanted)
            if not allowed and wanted > 1:
                # Near the limit a whole lease no longer fits, but one more call may.
                took = 1
                allowed = backend.window.hit(item, stored_key)
            stats = backend.window.get_window_stats(item, stored_key)
            return allowed, took, max(0, stats.remaining), stats.reset_time

        outcome = self._store.run(count, fail_open=fail_open)
        if outcome is None:
            return None
        allowed, took, remaining, reset_at = outcome
        if not allowed and carried:
            return self._renew(limit, key, carried)
        lifetime = LEASE_SECONDS
        if not allowed:
            # A refusal is remembered until a call may fit again, at most for the lease time,
            # so that a flood of refused requests does not become a flood on the store. Redis's
            # sliding window at times answers a refusal with a reset time of now, which tells
            # nothing: then for the lease time.
            wait = reset_at - time.time()
            lifetime = min(LEASE_SECONDS, wait) if wait > 0 else LEASE_SECONDS
        lease = _Lease(
            units=carried + took - 1 if allowed else 0,
            size=carried + took if allowed else 0,
            expires=time.monotonic() + lifetime,
            store_remaining=remaining,
            reset_at=reset_at,
            allowed=allowed,
        )
        with self._lock:
            held = self._leases.get(_lease_key(limit, key))
            if allowed and held is not None and held.allowed and held.expires > time.monotonic():
                # Calls taken before stay this process's to admit: never drop counted calls.
                lease.units += held.units
            self._leases[_lease_key(limit, key)] = lease
            if len(self._leases) > 4 * LEASE_CAP:
                self._forget_expired()
        return _usage(limit, lease, allowed=allowed)

    def _renew(self, limit: Limit, key: str, carried: int) -> Usage:
        """A new lifetime for calls a lapsed lease held; this request uses one of them."""
        with self._lock:
            lease = self._leases[_lease_key(limit, key)]
            lease.units, lease.size = carried - 1, carried
            lease.expires = time.monotonic() + LEASE_SECONDS
            return _usage(limit, lease, allowed=True)

    def _next_size(self, limit: Limit, key: str) -> tuple[int, int]:
        """How many calls the next lease should hold, and how many of them the lapsed lease
        still holds (counted already, so not to be taken again).

        One call at first; twice the last lease when it was spent in time; what was used of
        it when it lapsed. Never more than 1% of the limit, nor more than a tenth of what the
        store had left at the last take: near the limit, leases shrink to one call.
        """
        cap = max(1, min(limit.amount // LEASE_SHARE, LEASE_CAP))
        now = time.monotonic()
        with self._lock:
            lease = self._leases.get(_lease_key(limit, key))
            if lease is None or not lease.allowed:
                return 1, 0
            cap = max(1, min(cap, lease.store_remaining // REMAINING_SHARE))
            if lease.expires > now:
                return max(1, min(cap, 2 * lease.size)), 0  # spent in time: demand is higher
            used = lease.size - lease.units
            carried = lease.units if now - lease.expires < CARRY_SECONDS else 0
            lease.units = 0  # carried over at most once
        return max(1, min(cap, used)), carried

    def _forget_expired(self) -> None:
        # Not those whose calls the next lease may still carry over.
        now = time.monotonic() - CARRY_SECONDS
        for lease_key in [k for k, lease in self._leases.items() if lease.expires <= now]:
            del self._leases[lease_key]
            self._takers.pop(lease_key, None)


def _lease_key(limit: Limit, key: str) -> LeaseKey:
    return (limit.name, limit.amount, limit.seconds, key)


def _usage(limit: Limit, lease: _Lease, *, allowed: bool) -> Usage:
    reset_after = max(0, math.ceil(lease.reset_at - time.time()))
    # What the store had left when this process last asked, plus what this process still
    # holds: exact for one process, an estimate when several share the limit.
    remaining = lease.store_remaining + lease.units if allowed else 0
    return Usage(limit, allowed, remaining, reset_after)


class CallLimits:
    """Each company's call limit (calls per minute) on bearer-authenticated requests.

    If Redis is unreachable the limit is not enforced: an outage of the counter store must
    not become an outage of every company's API. The store logs an error line when it happens.
    """

    def __init__(self, limiter: Limiter, trail: RepeatAudit) -> None:
        self._limiter = limiter
        self._trail = trail
        self._store = limiter.store
        self._limits: dict[int, Limit] = {}
        # Companies whose lease is being renewed from Redis, on the event loop's side.
        self._refills: dict[str, asyncio.Event] = {}

    async def hit_async(self, token: TokenContext) -> Usage | None:
        """``hit`` for the event loop: the counter store is asked off it, one request at a time.

        When a company's lease is spent, every request that finds it so would otherwise take a
        thread to ask Redis, where all but the first would only queue for the first one's
        answer. Here the first one asks; the others wait for it on the event loop and then
        try the new lease, and ask themselves only if it has nothing left for them.
        """
        usage = self.hit_locally(token)
        if usage is not None:
            return usage
        if not self._store.shared:
            return self.hit(token)  # memory: nothing to wait for
        key = _company_key(token)
        while (refill := self._refills.get(key)) is not None:
            await refill.wait()
            usage = self.hit_locally(token)
            if usage is not None:
                return usage
        if self._store.down():
            return None  # what hit would answer, without a thread to learn it
        refill = self._refills[key] = asyncio.Event()
        try:
            # Redis may be slow or gone (then up to its timeout): never on the event loop.
            return await run_in_threadpool(self.hit, token)
        finally:
            del self._refills[key]
            refill.set()

    def hit(self, token: TokenContext) -> Usage | None:
        """Counts the call; None when the limit cannot be told (Redis is down).

        May wait for the counter store; ``hit_locally`` first spares that most of the time.
        A refused call comes back with ``allowed`` false: raise ``refusal`` for it.
        """
        return self._limiter.hit(self._limit(token), _company_key(token), fail_open=True)

    def hit_locally(self, token: TokenContext) -> Usage | None:
        """Counts the call from this process's lease without waiting; None if ``hit`` must.

        Never waits: safe on the event loop.
        """
        return self._limiter.hit_locally(self._limit(token), _company_key(token))

    def refusal(self, token: TokenContext, usage: Usage, origin: Origin) -> Throttled:
        """The 429 for a call that ``hit`` refused; the hit is logged and audited."""
        limit = usage.limit
        return _refusal(
            self._trail,
            limit,
            _company_key(token),
            usage,
            origin,
            f"this company's call limit ({limit.amount} calls per minute) is used up",
            company_id=token.company_id,
            operator_id=token.operator_id,
            client_id=token.client_id,
        )

    def _limit(self, token: TokenContext) -> Limit:
        limit = self._limits.get(token.call_limit_per_minute)
        if limit is None:
            limit = Limit(COMPANY_CALLS, token.call_limit_per_minute)
            self._limits[limit.amount] = limit
        return limit


def _company_key(token: TokenContext) -> str:
    return _uuid_text(token.company_id)


@functools.lru_cache(maxsize=4096)
def _uuid_text(value: uuid.UUID) -> str:
    return str(value)


class Check(NamedTuple):
    """One limit to count a request against: which, for which key, naming which client."""

    limit: Limit
    key: str
    client_id: str | None


class RequestLimits:
    """Limits on the token endpoint (per IP and per client) and the web sign-in (per IP).

    These fail closed to this process's memory: if Redis is unreachable each process still
    counts on its own.
    """

    def __init__(self, settings: Settings, limiter: Limiter, trail: RepeatAudit) -> None:
        self._limiter = limiter
        self._trail = trail
        self.token_per_ip = Limit(TOKEN_REQUESTS_PER_IP, settings.token_requests_per_ip_per_minute)
        self.token_per_client = Limit(
            TOKEN_REQUESTS_PER_CLIENT, settings.token_requests_per_client_per_minute
        )
        self.signin_per_ip = Limit(
            SIGNIN_REQUESTS_PER_IP, settings.signin_requests_per_ip_per_minute
        )

    def check_token_request(self, origin: Origin, client_id: str) -> None:
        """Counts a token request from this address for this client; raises Throttled.

        May wait for the counter store; ``admit_locally`` spares that most of the time.
        """
        self.enforce_all(self.token_request_checks(origin, client_id), origin)

    def token_request_checks(self, origin: Origin, client_id: str) -> list[Check]:
        return [
            Check(self.token_per_ip, origin.ip_address or "unknown", None),
            Check(self.token_per_client, client_id, client_id),
        ]

    def admit_locally(self, checks: list[Check]) -> list[Check]:
        """Counts each check that this process's leases admit, without waiting.

        Returns the others, to pass to ``enforce_all`` off the event loop: those the store
        must count, and those refused (their refusal is audited, which may wait too).
        """
        rest = []
        for check in checks:
            usage = self._limiter.hit_locally(check.limit, check.key)
            if usage is None or not usage.allowed:
                rest.append(check)
        return rest

    def enforce_all(self, checks: list[Check], origin: Origin) -> None:
        for check in checks:
            self.enforce(check.limit, check.key, origin, client_id=check.client_id)

    def check_sign_in(self, origin: Origin) -> None:
        """Counts a web sign-in attempt from this address; raises Throttled."""
        self.enforce(self.signin_per_ip, origin.ip_address or "unknown", origin)

    def enforce(
        self, limit: Limit, key: str, origin: Origin, *, client_id: str | None = None
    ) -> Usage:
        usage = self._limiter.hit(limit, key, fail_open=False)
        assert usage is not None
        if usage.allowed:
            return usage

        raise _refusal(
            self._trail,
            limit,
            key,
            usage,
            origin,
            f"too many requests: the limit is {limit.describe()} ({limit.name})",
            client_id=client_id,
        )


def _refusal(
    trail: RepeatAudit,
    limit: Limit,
    key: str,
    usage: Usage,
    origin: Origin,
    message: str,
    **ids: object,
) -> Throttled:
    """Records the hit (at most once per window and key) and makes the 429 to raise."""
    retry_after = max(1, usage.reset_after)
    trail.record(
        "ratelimit.hit",
        "refused",
        origin,
        key=f"{limit.name}/{key}",
        limit=limit.name,
        amount=limit.amount,
        window_seconds=limit.seconds,
        **ids,
    )
    return Throttled(
        f"{message}; try again in {retry_after} seconds",
        limit=limit.name,
        retry_after=retry_after,
        headers=usage.headers(),
    )
