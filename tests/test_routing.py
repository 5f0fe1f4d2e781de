"""Routes are added to the application flat, and only where that changes nothing."""

import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute

from erpauth.app import create_app
from erpauth.config import Settings
from erpauth.http.routing import add_routes


def test_every_route_of_the_application_is_in_its_own_route_list(tmp_path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'erpauth.db'}", data_dir=str(tmp_path / "data")
    )
    app = create_app(settings)
    # Nothing but path operations and the mounted static files: no router node that each
    # request would have to resolve again.
    kinds = {type(route).__name__ for route in app.router.routes}
    assert kinds <= {"APIRoute", "BearerRoute", "Mount", "Route"}, kinds
    documented = set(app.openapi()["paths"])
    flat = {route.path for route in app.router.routes if isinstance(route, APIRoute)}
    assert documented <= flat


def test_routes_keep_their_prefix_tags_and_order() -> None:
    router = APIRouter(prefix="/things", tags=["Things"])

    @router.get("/first")
    def first() -> dict[str, str]:
        return {"route": "first"}

    @router.get("/{name}")
    def any_other(name: str) -> dict[str, str]:
        return {"route": "any", "name": name}

    app = FastAPI()
    add_routes(app, router)

    added = [route for route in app.router.routes if isinstance(route, APIRoute)]
    # In their order: the fixed path before the one that would also match it.
    assert [route.path for route in added] == ["/things/first", "/things/{name}"]
    assert [route.endpoint for route in added] == [first, any_other]
    paths = app.openapi()["paths"]
    assert paths["/things/first"]["get"]["tags"] == ["Things"]
    assert paths["/things/{name}"]["get"]["tags"] == ["Things"]


def test_a_router_whose_inclusion_would_add_dependencies_is_refused() -> None:
    def needed() -> None:
        return None

    router = APIRouter(dependencies=[Depends(needed)])

    @router.get("/guarded")
    def guarded() -> None:
        return None

    with pytest.raises(TypeError, match="dependencies"):
        add_routes(FastAPI(), router)
