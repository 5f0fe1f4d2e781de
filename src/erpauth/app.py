"""The ASGI application."""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError

from erpauth import __version__, web
from erpauth.api import benchmark, docs, health, me, sessions
from erpauth.config import Settings
from erpauth.http import openapi
from erpauth.http.errors import install_error_handlers
from erpauth.http.middleware import (
    BodyLimitMiddleware,
    CaseInsensitivePathMiddleware,
    HeadAsGetMiddleware,
    SecurityHeadersMiddleware,
)
from erpauth.http.rate_headers import BearerResponseHeaders
from erpauth.http.routing import add_routes
from erpauth.oauth import bearer, discovery, introspection, revocation, token_endpoint
from erpauth.services import Services, build_services
from erpauth.storage.changes import RESET

# The payload of the change notice about signing keys (migration 0002).
SIGNING_KEYS = "signing_keys"

log = logging.getLogger("erpauth")

DESCRIPTION = """\
Authentication for the company's API.

Every API call carries `Authorization: Bearer <access token>`. To get a token, click
**Authorize** and enter:

* **username** and **password**: an operator's e-mail and password; the operator must be
  active and have API permission (a System Administrator grants it);
* **client_id** and **client_secret**: the company's API client credentials, from
  System Settings → API in the web application.

The company's license must have API access enabled.
"""


def create_app(settings: Settings, services: Services | None = None) -> FastAPI:
    """Builds the application; without ``services`` it connects at start-up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = services is None
        app.state.services = services or build_services(settings)
        try:
            app.state.services.keys.reload()
        except SQLAlchemyError as exc:
            # Start anyway: requests answer 503 until the database is back, then keys load.
            log.error("database unavailable at start-up: %s", type(exc).__name__)
        changes = app.state.services.changes
        if changes is not None:
            changes.subscribe(_reload_keys_on_change(app.state.services))
            changes.start()
        yield
        if changes is not None:
            await changes.stop()
        # The asyncio pool's connections belong to this event loop: close them while it runs.
        async_engine = app.state.services.database.async_autocommit
        if async_engine is not None:
            await async_engine.dispose()
        if owned:
            app.state.services.close()

    app = FastAPI(
        title="erpauth API",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        servers=[{"url": "/", "description": "this server"}],
        # Starlette would answer a trailing slash with a 307 to an address built from the Host
        # header, and a client would send its token request, password and all, there again.
        redirect_slashes=False,
    )
    app.state.settings = settings
    if services is not None:
        app.state.services = services

    # The token endpoint first: routes are matched in order, and it is the busiest.
    routers = [token_endpoint, revocation, introspection, discovery, me, sessions, health, docs]
    if settings.benchmark_routes:
        routers.append(benchmark)
    for module in routers:
        add_routes(app, module.router)
    install_error_handlers(app)
    web.install(app)
    openapi.install(app, bearer.document_security)

    api_paths = [path for path in app.openapi()["paths"] if "{" not in path]
    app.add_middleware(BearerResponseHeaders)
    app.add_middleware(CaseInsensitivePathMiddleware, paths=api_paths)
    app.add_middleware(HeadAsGetMiddleware)
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_body_bytes, page_for=web.too_large_page
    )
    app.add_middleware(SecurityHeadersMiddleware, hsts=settings.secure_cookies)
    return app


def _reload_keys_on_change(services: Services) -> Callable[[str], None]:
    """A change subscriber that reloads the signing keys when another process changed them.

    Retiring a key then ends its tokens in every process at once, not at the next periodic
    reload.
    """

    def reload() -> None:
        try:
            services.keys.reload()
        except SQLAlchemyError as exc:
            log.warning("signing keys not reloaded: %s", type(exc).__name__)

    def on_change(payload: str) -> None:
        # RESET while live: the feed has just started listening; changes may have been missed.
        coming_up = payload == RESET and services.changes is not None and services.changes.live
        if payload == SIGNING_KEYS or coming_up:
            reloaded = asyncio.get_running_loop().run_in_executor(None, reload)
            # Tokens checked while the reload ran were checked against the old keys.
            reloaded.add_done_callback(lambda _: services.tokens.standing.forget())

    return on_change
