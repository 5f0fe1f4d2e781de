"""Twin endpoints that differ only in bearer authentication, for measuring its cost.

Mounted only with ``ERPAUTH_BENCHMARK_ROUTES=1``; see ``bench/run.py``.
"""

from fastapi import APIRouter, Depends

from erpauth.domain.tokens import TokenContext
from erpauth.oauth.bearer import bearer_token

router = APIRouter(prefix="/benchmark", include_in_schema=False)

PAYLOAD = {"status": "ok"}


@router.get("/open")
async def open_endpoint() -> dict[str, str]:
    return PAYLOAD


@router.get("/protected")
async def protected_endpoint(_token: TokenContext = Depends(bearer_token)) -> dict[str, str]:
    return PAYLOAD
