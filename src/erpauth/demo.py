"""Demo data: one company with API access, a System Administrator and an API operator."""

from dataclasses import dataclass

from sqlalchemy import select

from erpauth.domain import audit
from erpauth.domain.audit import Origin
from erpauth.domain.clients import reveal_secret
from erpauth.domain.companies import account_code_key, create_company
from erpauth.domain.operators import create_and_audit_operator, find_operator
from erpauth.services import Services
from erpauth.storage.models import Company

DEMO_ACCOUNT_CODE = "DEMO"
DEMO_ADMIN = "admin@demo.example"
DEMO_OPERATOR = "operator@demo.example"


@dataclass(frozen=True)
class DemoCredentials:
    client_id: str
    client_secret: str
    admin_username: str
    admin_password: str | None
    operator_username: str
    operator_password: str | None


def ensure_demo(services: Services) -> DemoCredentials:
    """Creates what is missing and reports the credentials; running it again changes nothing.

    Demo passwords are derived from the server key, so every run prints the same ones without
    storing them. If someone changed a demo password since, it is reported as None.
    """
    admin_password = services.box.derive("demo-admin-password")
    operator_password = services.box.derive("demo-operator-password")

    with services.database.session() as session:
        company = session.scalar(
            select(Company).where(Company.account_code_key == account_code_key(DEMO_ACCOUNT_CODE))
        )
        if company is None:
            company = create_company(
                session,
                services.box,
                name="Demo Apparel Co.",
                account_code=DEMO_ACCOUNT_CODE,
                api_enabled=True,
                token_expiry_hours=24,
                call_limit_per_minute=200,
            )
            audit.record(
                session, "company.create", "success", Origin.cli(), company_id=company.id, demo=True
            )

        accounts = [
            (DEMO_ADMIN, admin_password, "Demo Administrator", True),
            (DEMO_OPERATOR, operator_password, "Demo Operator", False),
        ]
        current: dict[str, str | None] = {}
        for email, password, name, is_admin in accounts:
            operator = find_operator(session, email)
            if operator is None:
                create_and_audit_operator(
                    session,
                    services.hasher,
                    company,
                    Origin.cli(),
                    email=email,
                    password=password,
                    display_name=name,
                    is_system_admin=is_admin,
                    api_permission=True,
                    detail={"demo": True},
                )
                current[email] = password
            else:
                still = services.hasher.verify(operator.password_hash, password)
                current[email] = password if still else None

        client = company.api_client
        return DemoCredentials(
            client_id=client.client_id,
            client_secret=reveal_secret(services.box, client, "primary"),
            admin_username=DEMO_ADMIN,
            admin_password=current[DEMO_ADMIN],
            operator_username=DEMO_OPERATOR,
            operator_password=current[DEMO_OPERATOR],
        )
