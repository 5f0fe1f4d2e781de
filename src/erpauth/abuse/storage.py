"""Where the counters of every limit live: Redis when configured, else this process's memory.

With ``ERPAUTH_REDIS_URL`` set, all erpauth processes count together. When Redis cannot be
reached the caller chooses what happens: call limits are not enforced (fail open), while the
sign-in defences keep counting in this process's memory until Redis answers again.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import SlidingWindowCounterRateLimiter
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from erpauth.config import Settings

log = logging.getLogger("erpauth.abuse")

T = TypeVar("T")


@dataclass(frozen=True)
class Backend:
    """A storage and the sliding-window counter that works on it."""

    storage: Storage
    window: SlidingWindowCounterRateLimiter
    shared: bool


def _backend(storage: Storage, shared: bool) -> Backend:
    return Backend(storage, SlidingWindowCounterRateLimiter(storage), shared)


class CounterStore:
    """Runs counting operations on the shared storage, or on a fallback when it is down."""

    def __init__(self, settings: Settings) -> None:
        self._local = _backend(MemoryStorage(), shared=False)
        self._shared: Backend | None = None
        if settings.redis_url:
            redis_storage = RedisStorage(
                settings.redis_url,
                key_prefix=settings.limits_key_prefix,
                wrap_exceptions=True,
                socket_timeout=settings.redis_timeout_seconds,
                socket_connect_timeout=settings.redis_timeout_seconds,
                retry=Retry(NoBackoff(), 0),
            )
            self._shared = _backend(redis_storage, shared=True)
        self._retry_seconds = settings.redis_retry_seconds
        self._down_until = 0.0
        self._lock = threading.Lock()

    @property
    def shared(self) -> bool:
        """True when the counts are shared with other processes through Redis."""
        return self._shared is not None

    def down(self) -> bool:
        """True while Redis is taken for down: ``run`` then does not ask it."""
        return self._shared is not None and time.monotonic() < self._down_until

    def run(self, operation: Callable[[Backend], T], *, fail_open: bool) -> T | None:
        """The operation's result; None when Redis is down and ``fail_open`` is asked for."""
        if self._shared is None:
            return operation(self._local)

        if time.monotonic() >= self._down_until:
            try:
                result = operation(self._shared)
            except (StorageError, RedisError, OSError) as exc:
                self._mark_down(exc)
            else:
                if self._down_until:
                    self._mark_up()
                return result
        return None if fail_open else operation(self._local)

    def close(self) -> None:
        if self._shared is not None:
            self._shared.storage.storage.close()  # type: ignore[attr-defined]

    def _mark_down(self, exc: Exception) -> None:
        cause = exc.storage_error if isinstance(exc, StorageError) else exc
        with self._lock:
            already_down = self._down_until > time.monotonic() - self._retry_seconds
            self._down_until = time.monotonic() + self._retry_seconds
        if not already_down:
            # One line per outage, not one per request.
            log.error(
                "redis unreachable: call limits are not enforced and sign-in limits count in "
                "this process only, retrying in %ss",
                self._retry_seconds,
                extra={
                    "fields": {
                        "event": "limits.storage_down",
                        "error": f"{type(cause).__name__}: {cause}"[:300],
                    }
                },
            )

    def _mark_up(self) -> None:
        with self._lock:
            was_down, self._down_until = self._down_until, 0.0
        if was_down:
            log.warning(
                "redis reachable again: limits are shared and enforced",
                extra={"fields": {"event": "limits.storage_up"}},
            )
