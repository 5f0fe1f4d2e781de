"""Bounded password hashing.

Checking a password with argon2 costs tens of milliseconds of CPU and ~19 MiB of memory, and
it runs on the threads that also serve the API. Without a bound, a flood of sign-ins would
occupy every thread and the API would stop answering. The gate lets a few checks run, a few
more wait, and turns the rest away at once.
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from erpauth.abuse.errors import Saturated


class HashingGate:
    """At most ``concurrency`` checks at once and ``queue`` more waiting; others get Saturated."""

    def __init__(self, concurrency: int, queue: int, wait_seconds: float) -> None:
        self._running = threading.BoundedSemaphore(concurrency)
        self._admitted = threading.BoundedSemaphore(concurrency + queue)
        self._wait_seconds = wait_seconds

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Holds one hashing slot for the ``with`` block; raises Saturated when none is free."""
        if not self._admitted.acquire(blocking=False):
            raise Saturated(retry_after=1)
        try:
            if not self._running.acquire(timeout=self._wait_seconds):
                raise Saturated(retry_after=2)
            try:
                yield
            finally:
                self._running.release()
        finally:
            self._admitted.release()
