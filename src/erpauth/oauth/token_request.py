"""What the revocation and introspection endpoints share: a client-authenticated request
about one token, carried in ``token`` and ``token_type_hint`` (RFC 7009 §2.1, RFC 7662 §2.1).
"""

from dataclasses import dataclass
from typing import Any

from erpauth.oauth.errors import InvalidRequest
from erpauth.oauth.form import FORM_TYPE, form_schema

TOKEN_TYPE_HINTS = ("access_token", "refresh_token")


@dataclass(frozen=True)
class TokenRequest:
    token: str
    # An unknown hint is ignored, as RFC 7009 §2.1 allows: the lookup covers every kind.
    hint: str | None


def read_token_request(form: dict[str, str]) -> TokenRequest:
    token = form.get("token")
    if token is None:
        raise InvalidRequest("the token parameter is missing")
    hint = form.get("token_type_hint")
    return TokenRequest(token, hint if hint in TOKEN_TYPE_HINTS else None)


def token_request_body(description: str) -> dict[str, Any]:
    """The OpenAPI request body of a revocation or introspection request."""
    fields = {
        "token": {"type": "string", "minLength": 1, "description": description},
        "token_type_hint": {
            "type": "string",
            "description": "`access_token` or `refresh_token`; any other value is ignored.",
            "examples": list(TOKEN_TYPE_HINTS),
        },
        "client_id": {"type": "string", "description": "Only when not sent with HTTP Basic."},
        "client_secret": {"type": "string", "format": "password"},
    }
    return {
        "required": True,
        "content": {FORM_TYPE: {"schema": form_schema(fields, ["token"])}},
    }
