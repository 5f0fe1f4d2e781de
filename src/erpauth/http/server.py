"""How uvicorn serves erpauth: timeouts and size bounds that uvicorn does not have itself.

uvicorn closes idle keep-alive connections, but waits forever for a request's headers and body
and accepts headers of any size. ``GuardedHttpToolsProtocol`` bounds all three, so slow or
oversized requests cannot pile up open connections and memory.
"""

import asyncio
import functools
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from erpauth.config import Settings


def server_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` or ``uvicorn.Config``."""
    return {
        "http": functools.partial(
            GuardedHttpToolsProtocol,
            header_timeout=settings.http_header_timeout_seconds,
            body_timeout=settings.http_body_timeout_seconds,
            max_header_bytes=settings.http_max_header_bytes,
        ),
        "timeout_keep_alive": settings.http_keepalive_seconds,
        # uvicorn believes X-Forwarded-For from 127.0.0.1 unless told otherwise; erpauth only
        # from the proxies named, since the client address keys rate limits and the audit.
        "proxy_headers": bool(settings.trusted_proxies),
        "forwarded_allow_ips": settings.trusted_proxies or None,
        "limit_concurrency": settings.http_max_concurrency,
        "timeout_graceful_shutdown": 10,
    }


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with header and body deadlines and a header size bound."""

    def __init__(
        self,
        *args: Any,
        header_timeout: float,
        body_timeout: float,
        max_header_bytes: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout = header_timeout
        self._body_timeout = body_timeout
        self._max_header_bytes = max_header_bytes
        self._header_bytes = 0
        self._headers_too_large = False
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Until the first request begins, the wait is for its headers.
        self._arm(self._header_timeout, "the request headers did not arrive in time")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        if self._deadline is None:
            self._arm(self._header_timeout, "the request headers did not arrive in time")

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        self._arm(self._body_timeout, "the request body did not arrive in time")

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if self._headers_too_large:
            # The parser stopped because _count raised; answer with the precise status.
            self._refuse(431, "request_headers_too_large", "the request headers are too large")
            return
        super().send_400_response(msg)

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self._max_header_bytes:
            self._headers_too_large = True
            raise ValueError("request headers too large")

    def _arm(self, seconds: float, description: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire, description)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self, description: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()
            return
        self._refuse(408, "request_timeout", description)

    def _refuse(self, status: int, error: str, description: str) -> None:
        if self.cycle is not None:
            # Whatever the application still sends for this request goes nowhere.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        body = json.dumps({"error": error, "error_description": description}).encode()
        reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        head = [
            b"HTTP/1.1 %d %s" % (status, reason),
            b"content-type: application/json",
            b"content-length: %d" % len(body),
            b"cache-control: no-store",
            b"connection: close",
        ]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.transport.close()
