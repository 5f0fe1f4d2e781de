"""What the abuse defences refuse with; the HTTP layer and the web pages render these."""

from collections.abc import Mapping


class Throttled(Exception):
    """A limit is used up: the caller may try again after ``retry_after`` seconds.

    ``limit`` names the limit in words a client can log and a person can read, e.g.
    ``company_calls_per_minute``; ``headers`` are extra response headers (RateLimit-*).
    """

    def __init__(
        self,
        description: str,
        *,
        limit: str,
        retry_after: int,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(description)
        self.description = description
        self.limit = limit
        self.retry_after = max(1, retry_after)
        self.headers = {**(headers or {}), "Retry-After": str(self.retry_after)}


class Saturated(Exception):
    """Too many password checks are running or waiting; the caller should come back soon."""

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__("too many sign-ins are being checked right now; try again shortly")
        self.description = str(self)
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}
