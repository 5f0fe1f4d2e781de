"""ASGI middleware: body size limit, letter-case-insensitive paths, HEAD, security headers."""

import json
from collections.abc import Awaitable, Callable, Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    pass


async def _send_json(send: Send, status: int, body: dict[str, str]) -> None:
    # Written as Starlette's JSONResponse writes every other answer: compact, UTF-8.
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    await _send(send, status, text.encode(), b"application/json")


async def _send(send: Send, status: int, payload: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(payload)).encode()),
                (b"cache-control", b"no-store"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class BodyLimitMiddleware:
    """Refuses request bodies above a size, whether announced or streamed.

    ``page_for`` may give an HTML page for the refusal of a request (one for a path of the web
    application); every other request gets the JSON error of the API.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        page_for: Callable[[Scope], Awaitable[bytes | None]] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.page_for = page_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > self.max_bytes):
                await self._refuse(scope, send)
                return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        page = await self.page_for(scope) if self.page_for else None
        if page is not None:
            await _send(send, 413, page, b"text/html; charset=utf-8")
            return
        too_large = {
            "error": "request_too_large",
            "error_description": f"the request body is larger than {self.max_bytes} bytes",
        }
        await _send_json(send, 413, too_large)


class CaseInsensitivePathMiddleware:
    """Routes ``/Authentication/V1/.../Token`` like its lower-case spelling.

    Integrations of the system erpauth replaces use both spellings; its routing ignored case.
    """

    def __init__(self, app: ASGIApp, paths: Iterable[str]) -> None:
        self.app = app
        self.canonical = {path.lower(): path for path in paths}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            canonical = self.canonical.get(path.lower())
            if canonical is not None and canonical != path:
                scope = {**scope, "path": canonical, "raw_path": canonical.encode()}
        await self.app(scope, receive, send)


class HeadAsGetMiddleware:
    """Answers HEAD like GET (RFC 9110 §9.3.2); the routes declare GET only.

    The server (uvicorn) sends no body in answer to HEAD, whatever the application gives it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            scope = {**scope, "method": "GET"}
        await self.app(scope, receive, send)


class SecurityHeadersMiddleware:
    """Headers every response carries; pages get a strict Content-Security-Policy."""

    def __init__(self, app: ASGIApp, hsts: bool) -> None:
        self.app = app
        self.headers = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
            (
                b"content-security-policy",
                b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
            ),
        ]
        if hsts:
            self.headers.append((b"strict-transport-security", b"max-age=31536000"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in self.headers if n not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
