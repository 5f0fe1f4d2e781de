"""Who the client is behind a reverse proxy: X-Forwarded-For only from the proxies named."""

import pydantic
import pytest
from sqlalchemy import select

from erpauth.config import Settings
from erpauth.storage.models import AuditEvent
from tests.conftest import StartServer
from tests.support import TOKEN_PATH, LiveServer

FORWARDED = {"X-Forwarded-For": "198.51.100.7, 203.0.113.9"}


def refused_grant_address(server: LiveServer, headers: dict[str, str]) -> str | None:
    """Asks for a token with a wrong client secret and reads the address the audit recorded."""
    tenant = server.tenant()
    with server.client() as http:
        answer = http.post(
            TOKEN_PATH,
            auth=(tenant.client_id, "not-the-secret"),
            data={"grant_type": "password", "username": "a@b.example", "password": "x"},
            headers=headers,
        )
    assert answer.status_code == 401
    with server.services.database.session() as session:
        return session.scalar(
            select(AuditEvent.ip_address).where(
                AuditEvent.company_id == tenant.company_id, AuditEvent.kind == "token.issue"
            )
        )


def test_by_default_a_forwarded_address_is_not_believed(start_server: StartServer) -> None:
    # uvicorn alone would believe it: the request comes from 127.0.0.1.
    server = start_server()

    assert refused_grant_address(server, FORWARDED) == "127.0.0.1"


def test_a_named_proxy_is_believed_and_the_client_is_the_address_it_saw(
    start_server: StartServer,
) -> None:
    server = start_server(trusted_proxies="127.0.0.1")

    # The rightmost address that is not a trusted proxy: what the proxy itself saw. What the
    # client wrote further left is not believed.
    assert refused_grant_address(server, FORWARDED) == "203.0.113.9"
    assert refused_grant_address(server, {}) == "127.0.0.1"


def test_a_proxy_network_is_accepted_and_a_host_name_is_a_clear_error() -> None:
    assert Settings(trusted_proxies=" 10.0.0.5, 10.1.0.0/16 ,::1").trusted_proxies == (
        "10.0.0.5,10.1.0.0/16,::1"
    )
    with pytest.raises(pydantic.ValidationError, match="'proxy.local' is not an IP address"):
        Settings(trusted_proxies="10.0.0.5,proxy.local")
