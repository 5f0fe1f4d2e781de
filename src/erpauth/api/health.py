"""Health checks for load balancers and orchestrators; no token needed."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

router = APIRouter(prefix="/health", tags=["Health"])


@router.get("/live", summary="The process answers")
def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="The process can reach its database")
def ready(request: Request) -> JSONResponse:
    try:
        with request.app.state.services.database.session() as session:
            session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})
