"""Request limits: each company's call limit, and the limits on getting a token or signing in.

Counting uses the sliding-window counter of the ``limits`` library: a request is allowed when
the calls of the current window plus the previous window's calls, weighted by how much of it
still overlaps, stay within the limit.
"""

import math
import time
from dataclasses import dataclass

from limits import RateLimitItemPerSecond

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

    def describe(self) -> str:
        per = "minute" if self.seconds == 60 else f"{self.seconds} seconds"
        return f"{self.amount} per {per}"


@dataclass(frozen=True)
class Usage:
    """Where one key stands against a limit, right after a request was counted."""

    limit: Limit
    allowed: bool
    remaining: int
    reset_after: int

    def headers(self) -> dict[str, str]:
        """The rate-limit fields of the IETF httpapi draft, as separate headers."""
        return {
            "RateLimit-Limit": str(self.limit.amount),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_after),
            "RateLimit-Policy": f"{self.limit.amount};w={self.limit.seconds}",
        }


class Limiter:
    """Counts requests against limits in the counter store."""

    def __init__(self, store: CounterStore) -> None:
        self._store = store

    def hit(self, limit: Limit, key: str, *, fail_open: bool) -> Usage | None:
        """Counts one request; None only when the store is down and ``fail_open`` is asked."""
        item = RateLimitItemPerSecond(limit.amount, limit.seconds, namespace=limit.name)
        key = key_part(key)

        def count(backend: Backend) -> Usage:
            allowed = backend.window.hit(item, key)
            stats = backend.window.get_window_stats(item, key)
            reset_after = max(0, math.ceil(stats.reset_time - time.time()))
            return Usage(limit, allowed, max(0, stats.remaining), reset_after)

        return self._store.run(count, fail_open=fail_open)


class CallLimits:
    """Each company's call limit (calls per minute) on bearer-authenticated requests.

    If Redis is unreachable the limit is not enforced: an outage of the counter store must
    not become an outage of every company's API. The store logs an error line when it happens.
    """

    def __init__(self, limiter: Limiter, trail: RepeatAudit) -> None:
        self._limiter = limiter
        self._trail = trail

    def hit(self, token: TokenContext, origin: Origin) -> Usage | None:
        """Counts the call; raises Throttled when the company's calls are used up."""
        limit = Limit(COMPANY_CALLS, token.call_limit_per_minute)
        usage = self._limiter.hit(limit, str(token.company_id), fail_open=True)
        if usage is None or usage.allowed:
            return usage

        raise _refusal(
            self._trail,
            limit,
            str(token.company_id),
            usage,
            origin,
            f"this company's call limit ({limit.amount} calls per minute) is used up",
            company_id=token.company_id,
            operator_id=token.operator_id,
            client_id=token.client_id,
        )


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
        """Counts a token request from this address for this client; raises Throttled."""
        self.enforce(self.token_per_ip, origin.ip_address or "unknown", origin)
        self.enforce(self.token_per_client, client_id, origin, client_id=client_id)

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
