"""What the revocation and introspection endpoints share: a client-authenticated request
about one token, carried in ``token`` and ``token_type_hint`` (RFC 7009 §2.1, RFC 7662 §2.1).
"""

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from erpauth.domain import audit
from erpauth.domain.audit import Origin
from erpauth.domain.clients import authenticate_client
from erpauth.oauth.client_auth import ClientCredentials
from erpauth.oauth.errors import InvalidRequest, OAuthError
from erpauth.oauth.form import FORM_TYPE, form_schema
from erpauth.services import Services
from erpauth.storage.models import ApiClient

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


def authenticate_request_client(
    session: Session, services: Services, credentials: ClientCredentials, kind: str, origin: Origin
) -> ApiClient | OAuthError:
    """The authenticated client, or the invalid_client error (recorded) to answer with."""
    client = authenticate_client(
        session, services.box, credentials.client_id, credentials.client_secret
    )
    if client is not None:
        return client
    audit.record(
        session,
        kind,
        "refused",
        origin,
        reason="invalid_client",
        attempted_client_id=credentials.client_id[:64],
    )
    return credentials.refusal("the client ID or client secret is wrong")


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
