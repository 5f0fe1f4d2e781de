"""RateLimit-* headers on the responses of bearer-authenticated requests."""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from erpauth.abuse import Usage


class RateLimitHeadersMiddleware:
    """Adds the company's call-limit usage that ``bearer_token`` left in the request state.

    Any response of such a request carries them, whatever the endpoint returns.
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
            usage = state.get("rate_limit")
            if message["type"] == "http.response.start" and isinstance(usage, Usage):
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [
                    (name.lower().encode(), value.encode())
                    for name, value in usage.headers().items()
                    if name.lower().encode() not in present
                ]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
