"""Who am I: the operator, company and client an access token speaks for."""

import uuid
from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel

from erpauth.http.openapi import BEARER_RESPONSES
from erpauth.oauth.bearer import BearerRoute, caller

router = APIRouter(prefix="/authentication/v1", tags=["Authentication"], route_class=BearerRoute)


class OperatorOut(BaseModel):
    id: uuid.UUID
    email: str
    display_name: str
    is_system_admin: bool


class CompanyOut(BaseModel):
    id: uuid.UUID
    name: str
    account_code: str


class MeOut(BaseModel):
    operator: OperatorOut
    company: CompanyOut
    client_id: str
    scope: str
    issued_at: datetime
    expires_at: datetime | None


@router.get(
    "/me",
    summary="Who the access token speaks for",
    response_model=MeOut,
    responses=BEARER_RESPONSES,
)
def me(request: Request) -> MeOut:
    token = caller(request)
    return MeOut(
        operator=OperatorOut(
            id=token.operator_id,
            email=token.email,
            display_name=token.display_name,
            is_system_admin=token.is_system_admin,
        ),
        company=CompanyOut(
            id=token.company_id, name=token.company_name, account_code=token.account_code
        ),
        client_id=token.client_id,
        scope=token.scope,
        issued_at=token.issued_at,
        expires_at=token.expires_at,
    )
