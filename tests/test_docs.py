"""Swagger UI and the OpenAPI document: served locally, with an OAuth2 password flow."""

import re
from pathlib import Path

from erpauth.config import Settings
from tests.support import TOKEN_PATH, LiveServer


def test_openapi_declares_the_oauth2_password_flow_at_the_token_endpoint(live: LiveServer) -> None:
    with live.client() as http:
        document = http.get("/openapi.json").json()

    scheme = document["components"]["securitySchemes"]["OAuth2"]
    assert scheme["type"] == "oauth2"
    assert scheme["flows"]["password"]["tokenUrl"] == TOKEN_PATH
    for needed in ("client_id", "client_secret", "username", "password"):
        assert needed in document["info"]["description"]


def test_protected_operations_require_the_oauth2_scheme(live: LiveServer) -> None:
    with live.client() as http:
        paths = http.get("/openapi.json").json()["paths"]

    assert paths["/authentication/v1/me"]["get"]["security"] == [{"OAuth2": []}]
    assert "security" not in paths[TOKEN_PATH]["post"]
    assert (
        "application/x-www-form-urlencoded" in paths[TOKEN_PATH]["post"]["requestBody"]["content"]
    )


def test_swagger_ui_is_served_without_any_external_asset(live: LiveServer) -> None:
    with live.client() as http:
        page = http.get("/docs")
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        fetched = {asset: http.get(asset) for asset in assets}

    assert page.status_code == 200
    assert assets and all(asset.startswith("/") for asset in assets)
    assert all(response.status_code == 200 for response in fetched.values())
    assert "<script>" not in page.text  # no inline script: the CSP forbids it


def test_health_checks_need_no_token(live: LiveServer) -> None:
    with live.client() as http:
        assert http.get("/health/live").json() == {"status": "ok"}
        assert http.get("/health/ready").json()["database"] == "ok"


def documented_settings() -> set[str]:
    """Names the README and docs/ give as settings: ERPAUTH_X anywhere, or `X` in a table row."""
    root = Path(__file__).resolve().parent.parent
    names: set[str] = set()
    for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        text = page.read_text()
        names |= set(re.findall(r"ERPAUTH_([A-Z0-9_]*[A-Z0-9])\b", text))
        names |= set(re.findall(r"^\| `(?:ERPAUTH_)?([A-Z][A-Z0-9_]+)`", text, flags=re.MULTILINE))
    return {name for name in names if not name.startswith("TEST_")}


def test_every_setting_is_documented_and_every_documented_setting_exists() -> None:
    settings = {name.upper() for name in Settings.model_fields}
    documented = documented_settings()

    undocumented = settings - documented
    assert not undocumented, f"settings missing from README.md and docs/: {sorted(undocumented)}"
    unknown = documented - settings
    assert not unknown, f"README.md or docs/ name settings that do not exist: {sorted(unknown)}"
