"""Test support: a real erpauth server on a real port, backed by SQLite or PostgreSQL."""

import os
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from erpauth.app import create_app
from erpauth.config import Settings
from erpauth.domain.clients import reveal_secret
from erpauth.domain.companies import create_company
from erpauth.domain.operators import create_operator
from erpauth.http.server import server_options
from erpauth.services import Services, build_services

POSTGRES_ADMIN_URL = os.environ.get(
    "ERPAUTH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("ERPAUTH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TOKEN_PATH = "/authentication/v1/authentication/token"
ME_PATH = "/authentication/v1/me"
# Limit counters of this test run, apart from any other run's on a shared Redis.
LIMITS_KEY_PREFIX = f"erpauth-test-{secrets.token_hex(4)}"
# Every test client comes from 127.0.0.1: per-IP limits that suit production would trip
# across tests. Tests of the limits configure their own, small ones.
TEST_LIMITS = {
    "limits_key_prefix": LIMITS_KEY_PREFIX,
    "token_requests_per_ip_per_minute": 100_000,
    "signin_requests_per_ip_per_minute": 100_000,
}


@dataclass
class Operator:
    email: str
    password: str
    id: uuid.UUID


@dataclass
class Tenant:
    """A company with its API client and operators, made fresh for one test."""

    code: str
    company_id: uuid.UUID
    client_id: str
    primary_secret: str
    secondary_secret: str
    operators: dict[str, Operator] = field(default_factory=dict)

    @property
    def operator(self) -> Operator:
        return self.operators["operator"]

    @property
    def admin(self) -> Operator:
        return self.operators["admin"]


class LiveServer:
    """erpauth served by uvicorn in a thread of the test process, on a free loopback port."""

    def __init__(self, settings: Settings, services: Services) -> None:
        self.settings = settings
        self.services = services
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(settings, services),
            log_level="warning",
            lifespan="on",
            **server_options(settings),
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)  # type: ignore[arg-type]

    def tenant(
        self,
        *,
        api_enabled: bool = True,
        token_expiry_hours: int = 24,
        call_limit_per_minute: int = 200,
    ) -> Tenant:
        """A new company with an admin and an API operator (both with API permission)."""
        code = "T" + secrets.token_hex(6)
        with self.services.database.session() as session:
            company = create_company(
                session,
                self.services.box,
                name=f"Company {code}",
                account_code=code,
                api_enabled=api_enabled,
                token_expiry_hours=token_expiry_hours,
                call_limit_per_minute=call_limit_per_minute,
            )
            client = company.api_client
            tenant = Tenant(
                code=code,
                company_id=company.id,
                client_id=client.client_id,
                primary_secret=reveal_secret(self.services.box, client, "primary"),
                secondary_secret=reveal_secret(self.services.box, client, "secondary"),
            )
        self.add_operator(tenant, "admin", is_system_admin=True, api_permission=True)
        self.add_operator(tenant, "operator", api_permission=True)
        return tenant

    def add_operator(
        self,
        tenant: Tenant,
        role: str,
        *,
        is_system_admin: bool = False,
        api_permission: bool = False,
    ) -> Operator:
        email = f"{role}.{secrets.token_hex(4)}@{tenant.code.lower()}.example"
        password = secrets.token_urlsafe(16)
        with self.services.database.session() as session:
            from erpauth.storage.models import Company

            company = session.get(Company, tenant.company_id)
            row = create_operator(
                session,
                self.services.hasher,
                company,
                email=email,
                password=password,
                display_name=role.title(),
                is_system_admin=is_system_admin,
                api_permission=api_permission,
            )
            operator = Operator(email=email, password=password, id=row.id)
        tenant.operators[role] = operator
        return operator

    def password_grant(
        self, tenant: Tenant, operator: Operator | None = None, *, secret: str | None = None
    ) -> httpx.Response:
        operator = operator or tenant.operator
        with self.client() as http:
            return http.post(
                TOKEN_PATH,
                auth=(tenant.client_id, secret or tenant.primary_secret),
                data={
                    "grant_type": "password",
                    "username": operator.email,
                    "password": operator.password,
                },
            )

    def access_token(self, tenant: Tenant, operator: Operator | None = None) -> str:
        response = self.password_grant(tenant, operator)
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def me(self, token: str) -> httpx.Response:
        with self.client() as http:
            return http.get(ME_PATH, headers={"Authorization": f"Bearer {token}"})


def make_settings(data_dir: Path, database_url: str | None, **overrides: object) -> Settings:
    options = {"public_url": "http://127.0.0.1:8000"} | TEST_LIMITS | overrides
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        secret_key=None,
        **options,  # type: ignore[arg-type]
    )


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test session, dropped afterwards."""
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"erpauth_test_{secrets.token_hex(4)}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def live_server(settings: Settings) -> Iterator[LiveServer]:
    services = build_services(settings, migrate=True)
    server = LiveServer(settings, services)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        services.close()


def inside_one_window(seconds: int = 60, margin: float = 5.0) -> None:
    """Waits, if need be, until the next ``margin`` seconds fall inside one counting window.

    The request limits count in windows aligned to the clock; a test that expects a limit to
    bite after so many requests must not straddle a window's edge, where the count eases.
    """
    left = seconds - time.time() % seconds
    if left < margin:
        time.sleep(left + 0.05)
