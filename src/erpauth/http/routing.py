"""Adding a module's routes to the application."""

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """Puts the router's routes in the application's own route list, in their order.

    ``app.include_router`` (FastAPI 0.137 and later) keeps an included router as one node,
    which every request resolves again: each router before the one that holds the route
    costs a scan of its routes and a second look at the one chosen. With a dozen routers,
    that was about a third of the application's own time on a plain request. A flat list
    is matched route by route, as Starlette does.

    Suits routers without router-level dependencies or other settings that inclusion would
    apply to their routes: their routes are already complete (path prefix, tags, route
    class), so they answer and document the same.
    """
    for route in router.routes:
        if not isinstance(route, APIRoute):
            raise TypeError(f"{route!r} is not a path operation; include its router instead")
        if route.dependencies:
            raise TypeError(f"{route.path} has dependencies; include its router instead")
    app.router.routes.extend(router.routes)
