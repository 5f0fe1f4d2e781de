"""Who is on the other end of a request."""

from starlette.requests import Request

from erpauth.domain.audit import Origin


def origin_of(request: Request) -> Origin:
    return Origin(
        ip_address=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )
