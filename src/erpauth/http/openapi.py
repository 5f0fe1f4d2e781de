"""Response declarations that many operations share in the OpenAPI document."""

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "error_description": {"type": "string"},
        "limit": {"type": "string", "description": "Which limit refused the request."},
        "retry_after": {"type": "integer", "description": "Seconds to wait."},
    },
}


def json_error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """An error response in the one JSON shape every error of this service has."""
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": ERROR_SCHEMA}},
    }
    if headers:
        response["headers"] = headers
    return response


_SECONDS = {"schema": {"type": "integer", "minimum": 0}}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again.", **_SECONDS}}
_FIELD = {"schema": {"type": "string"}}
RATE_LIMIT_HEADERS = {
    "RateLimit-Policy": {
        "description": (
            "The company's call limit, as quota `q` per window `w` seconds: "
            '`"company_calls_per_minute";q=200;w=60`.'
        ),
        **_FIELD,
    },
    "RateLimit": {
        "description": (
            "What is left of it, `r` calls, and the seconds `t` until more are allowed: "
            '`"company_calls_per_minute";r=0;t=12`.'
        ),
        **_FIELD,
    },
}
BASIC_CHALLENGE = {
    "WWW-Authenticate": {
        "description": "Present when the client tried HTTP Basic, or sent no credentials.",
        "schema": {"type": "string"},
    }
}

LIMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    "429": json_error("Too many requests: a limit is used up; `limit` says which.", RETRY_AFTER),
    "503": json_error("Busy or briefly unavailable; try again after Retry-After.", RETRY_AFTER),
}

# The token, revocation and introspection endpoints: a form, and the API client's credentials.
CLIENT_AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    "400": json_error("The request is not valid (not a UTF-8 form, a parameter missing or twice)."),
    "401": json_error("Client authentication failed.", BASIC_CHALLENGE),
    **LIMIT_RESPONSES,
}

BEARER_RESPONSES: dict[int | str, dict[str, Any]] = {
    "400": json_error("The Authorization header is malformed."),
    "401": json_error("The access token is missing, invalid, expired or revoked."),
    "429": json_error(
        "The company's call limit is used up.", {**RETRY_AFTER, **RATE_LIMIT_HEADERS}
    ),
    "503": json_error("Briefly unavailable; try again after Retry-After.", RETRY_AFTER),
}

TOO_LARGE = json_error("The request body is larger than the service accepts.")


def install(app: FastAPI, *extras: Callable[[FastAPI, dict[str, Any]], None]) -> None:
    """Serves the app's document with what its operations share but FastAPI cannot know.

    Each of ``extras`` may add to the document before it is served.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = complete(generate())
            for extra in extras:
                extra(app, document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(document: dict[str, Any]) -> dict[str, Any]:
    """Declares 413 everywhere and removes FastAPI's 422, which this service never answers.

    The body size limit applies before any routing; request validation errors are answered
    with 400 by ``erpauth.http.errors``, and each operation that can meet one declares it.
    """
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            responses.setdefault("413", TOO_LARGE)

    # Only those 422 answers referred to these.
    schemas = document.get("components", {}).get("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    return document
