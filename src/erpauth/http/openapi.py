"""Response declarations that many operations share in the OpenAPI document."""

from typing import Any

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


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": ERROR_SCHEMA}},
    }
    if headers:
        response["headers"] = headers
    return response


_SECONDS = {"schema": {"type": "integer", "minimum": 0}}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again.", **_SECONDS}}
RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": {"description": "The company's calls per minute.", **_SECONDS},
    "RateLimit-Remaining": {"description": "Calls left in the current window.", **_SECONDS},
    "RateLimit-Reset": {"description": "Seconds until more calls are allowed.", **_SECONDS},
}

LIMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    "429": _error("Too many requests: a limit is used up; `limit` says which.", RETRY_AFTER),
    "503": _error("Busy or briefly unavailable; try again after Retry-After.", RETRY_AFTER),
}

BEARER_RESPONSES: dict[int | str, dict[str, Any]] = {
    "400": _error("The Authorization header is malformed."),
    "401": _error("The access token is missing, invalid, expired or revoked."),
    "429": _error("The company's call limit is used up.", {**RETRY_AFTER, **RATE_LIMIT_HEADERS}),
    "503": _error("Briefly unavailable; try again after Retry-After.", RETRY_AFTER),
}
