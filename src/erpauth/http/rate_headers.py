"""Headers on every response to a request that presented a bearer token."""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from erpauth.abuse import Usage

NO_STORE = (b"cache-control", b"no-store")


class BearerResponseHeaders:
    """Marks answers about a token ``Cache-Control: no-store``, and adds RateLimit-* headers.

    ``erpauth.oauth.bearer.authenticate`` leaves the token's context and the company's
    call-limit usage in the request state; any response of such a request carries them,
    whatever the endpoint returns.
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
            if message["type"] == "http.response.start" and "token" in state:
                headers = list(message.get("headers", []))
                # Starlette's responses name their headers in lower case.
                present = {name for name, _ in headers}
                if b"cache-control" not in present:
                    headers.append(NO_STORE)
                usage = state.get("rate_limit")
                if isinstance(usage, Usage) and b"ratelimit-limit" not in present:
                    headers += usage.raw_headers()
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
