"""When the database goes away the service says so in JSON, instead of failing with a 500."""

from collections.abc import Iterator

import pytest

from erpauth.services import build_services
from tests.support import ME_PATH, TOKEN_PATH, LiveServer, make_settings


@pytest.fixture
def unreachable(tmp_path) -> Iterator[LiveServer]:
    # Port 9 on loopback (discard) has no PostgreSQL behind it.
    settings = make_settings(tmp_path, "postgresql+psycopg://postgres@127.0.0.1:9/none")
    services = build_services(settings)
    server = LiveServer(settings, services)
    server.start()
    yield server
    server.stop()
    services.close()


@pytest.mark.parametrize(
    "form",
    [
        {"grant_type": "password", "username": "a@b.example", "password": "x"},
        # On PostgreSQL the refresh grant first tries its fast path, on the event loop.
        {"grant_type": "refresh_token", "refresh_token": "a-refresh-token"},
    ],
    ids=["password", "refresh_token"],
)
def test_token_endpoint_answers_503_while_the_database_is_unreachable(
    unreachable: LiveServer, form: dict[str, str]
) -> None:
    with unreachable.client() as http:
        response = http.post(
            TOKEN_PATH, auth=("00000000-0000-0000-0000-000000000000", "secret"), data=form
        )

    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert response.headers["retry-after"]


def test_protected_api_and_readiness_answer_503_while_the_database_is_unreachable(
    unreachable: LiveServer,
) -> None:
    with unreachable.client() as http:
        api = http.get(ME_PATH, headers={"Authorization": "Bearer a.b.c"})
        ready = http.get("/health/ready")

    assert api.status_code in (401, 503)
    assert ready.status_code == 503
    assert ready.json()["database"] == "unreachable"
