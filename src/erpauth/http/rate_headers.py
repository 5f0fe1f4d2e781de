"""Headers on every response to a request that presented a bearer token."""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from erpauth.abuse import Usage

NO_STORE = (b"cache-control", b"no-store")


class BearerResponseHeaders:
    """Marks answers about a token ``Cache-Control: no-store``, and adds the RateLimit headers.

    ``erpauth.oauth.bearer.authenticate`` leaves the token's context and the company's
    call-limit usage in the request state; any response of such a request carries them,
    whatever the endpoint returns. Every request passes through here, and every API call
    adds headers: the pairs are pre-encoded and the response's header list is read once.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Made here so that middleware which copies the scope still shares this dict.
        state = scope.setdefault("state", {})

        async def send_with_headers(message: Message) -> None:
            if "token" in state and message["type"] == "http.response.start":
                message = _with_headers(message, state.get("rate_limit"))
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _with_headers(message: Message, usage: object) -> Message:
    """The response start with no-store and the usage's headers, unless the endpoint set its own.

    Starlette's responses name their headers in lower case.
    """
    headers = message.get("headers") or ()
    cache_control = rate_limit = False
    for name, _ in headers:
        if name == b"cache-control":
            cache_control = True
        elif name == b"ratelimit":
            rate_limit = True
    added = [*headers] if cache_control else [*headers, NO_STORE]
    if isinstance(usage, Usage) and not rate_limit:
        added += usage.raw_headers()
    return {**message, "headers": added}
