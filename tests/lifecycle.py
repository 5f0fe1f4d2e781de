"""Helpers for the token lifecycle tests: refresh, revoke, introspect, audit, the CLI."""

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import select

from erpauth.storage.models import AuditEvent
from tests.support import TOKEN_PATH, LiveServer, Tenant

REVOKE_PATH = "/authentication/v1/authentication/revoke"
INTROSPECT_PATH = "/authentication/v1/authentication/introspect"
TOKENS_PATH = "/authentication/v1/tokens"
METADATA_PATH = "/.well-known/oauth-authorization-server"
JWKS_PATH = "/.well-known/jwks.json"


def refresh(server: LiveServer, tenant: Tenant, refresh_token: str, **extra: str) -> httpx.Response:
    with server.client() as http:
        return http.post(
            TOKEN_PATH,
            auth=(tenant.client_id, tenant.primary_secret),
            data={"grant_type": "refresh_token", "refresh_token": refresh_token, **extra},
        )


def revoke(server: LiveServer, tenant: Tenant, token: str, **extra: str) -> httpx.Response:
    with server.client() as http:
        return http.post(
            REVOKE_PATH,
            auth=(tenant.client_id, tenant.primary_secret),
            data={"token": token, **extra},
        )


def introspect(server: LiveServer, tenant: Tenant, token: str, **extra: str) -> httpx.Response:
    with server.client() as http:
        return http.post(
            INTROSPECT_PATH,
            auth=(tenant.client_id, tenant.primary_secret),
            data={"token": token, **extra},
        )


def token_pair(server: LiveServer, tenant: Tenant, operator: Any = None) -> dict[str, Any]:
    """The password grant's answer: access_token, refresh_token, expires_in, ..."""
    response = server.password_grant(tenant, operator)
    assert response.status_code == 200, response.text
    return response.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def audit_events(server: LiveServer, company_id: uuid.UUID, kind: str) -> list[AuditEvent]:
    with server.services.database.session() as session:
        return list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.company_id == company_id, AuditEvent.kind == kind)
                .order_by(AuditEvent.id)
            )
        )


def run_cli(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs ``erpauth ARGS --json`` in a new process against the server's database."""
    env = {
        **os.environ,
        "ERPAUTH_DATA_DIR": str(server.settings.data_dir),
        "ERPAUTH_DATABASE_URL": server.settings.resolved_database_url(),
        "ERPAUTH_PUBLIC_URL": server.settings.public_url,
        "ERPAUTH_LOG_LEVEL": "WARNING",
    }
    return subprocess.run(
        [sys.executable, "-m", "erpauth.cli", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def cli_json(server: LiveServer, *args: str) -> dict[str, Any]:
    done = run_cli(server, *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def race(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Runs the calls in threads released at the same moment; every wait is bounded."""
    barrier = threading.Barrier(len(calls), timeout=10)
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def worker(call: Callable[[], httpx.Response]) -> None:
        barrier.wait()
        response = call()
        with lock:
            results.append(response)

    threads = [threading.Thread(target=worker, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == len(calls), "a racing request did not finish"
    return results
