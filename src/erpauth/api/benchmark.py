"""Twin endpoints that differ only in bearer authentication, for measuring its cost.

Mounted only with ``ERPAUTH_BENCHMARK_ROUTES=1``; see ``bench/run.py``. Both sit in one
router, so that finding either costs the same.
"""

from fastapi import APIRouter

from erpauth.oauth.bearer import BearerRoute

router = APIRouter(prefix="/benchmark", include_in_schema=False)

PAYLOAD = {"status": "ok"}


async def open_endpoint() -> dict[str, str]:
    return PAYLOAD


async def protected_endpoint() -> dict[str, str]:
    return PAYLOAD


router.add_api_route("/open", open_endpoint, methods=["GET"])
# The same, except that the route serves only requests with a valid access token.
router.add_api_route(
    "/protected", protected_endpoint, methods=["GET"], route_class_override=BearerRoute
)
