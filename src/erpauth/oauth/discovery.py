"""Authorization server metadata (RFC 8414) and the JWKS that verifies access tokens offline."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from erpauth.domain.tokens import SUPPORTED_SCOPES
from erpauth.http.openapi import RETRY_AFTER, json_error
from erpauth.oauth.introspection import INTROSPECTION_PATH
from erpauth.oauth.revocation import REVOCATION_PATH
from erpauth.oauth.token_endpoint import GRANTS, TOKEN_PATH
from erpauth.services import Services

METADATA_PATH = "/.well-known/oauth-authorization-server"
JWKS_PATH = "/.well-known/jwks.json"
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

# Short enough that a retired key leaves resource servers' caches soon after it leaves ours.
JWKS_MAX_AGE_SECONDS = 60

router = APIRouter(tags=["Discovery"])


class JwkSetResponse(JSONResponse):
    media_type = "application/jwk-set+json"


_URL = {"type": "string", "format": "uri"}
_NAMES = {"type": "array", "items": {"type": "string"}}
_METADATA = {
    "type": "object",
    "required": ["issuer", "token_endpoint", "jwks_uri", "response_types_supported"],
    "properties": {
        "issuer": _URL,
        "token_endpoint": _URL,
        "revocation_endpoint": _URL,
        "introspection_endpoint": _URL,
        "jwks_uri": _URL,
        "scopes_supported": _NAMES,
        "response_types_supported": _NAMES,
        "grant_types_supported": _NAMES,
        "token_endpoint_auth_methods_supported": _NAMES,
        "revocation_endpoint_auth_methods_supported": _NAMES,
        "introspection_endpoint_auth_methods_supported": _NAMES,
        "service_documentation": _URL,
    },
}
_JWK_SET = {
    "type": "object",
    "required": ["keys"],
    "properties": {
        "keys": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["kty", "kid"],
                "properties": {
                    "kty": {"type": "string"},
                    "kid": {"type": "string"},
                    "use": {"type": "string"},
                    "alg": {"type": "string"},
                    "crv": {"type": "string"},
                    "x": {"type": "string"},
                    "y": {"type": "string"},
                },
            },
        }
    },
}


@router.get(
    METADATA_PATH,
    summary="Authorization server metadata",
    description="RFC 8414: where the endpoints are and what they support.",
    responses={
        200: {
            "description": "The metadata.",
            "content": {"application/json": {"schema": _METADATA}},
        }
    },
)
def metadata(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    return JSONResponse(
        server_metadata(services.settings.issuer),
        headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE_SECONDS}"},
    )


@router.get(
    JWKS_PATH,
    summary="Public keys that verify access tokens",
    description=(
        "A JSON Web Key Set (RFC 7517) holding every key whose tokens are still accepted; "
        "the `kid` in a token's header names its key."
    ),
    response_class=JwkSetResponse,
    responses={
        200: {
            "description": "The key set.",
            "content": {"application/jwk-set+json": {"schema": _JWK_SET}},
        },
        # The keys are re-read from the database now and then, so that rotations show.
        503: json_error("The database cannot be reached; try again shortly.", RETRY_AFTER),
    },
)
def jwks(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    return JwkSetResponse(
        services.keys.jwks(),
        headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE_SECONDS}"},
    )


def server_metadata(issuer: str) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "token_endpoint": issuer + TOKEN_PATH,
        "revocation_endpoint": issuer + REVOCATION_PATH,
        "introspection_endpoint": issuer + INTROSPECTION_PATH,
        "jwks_uri": issuer + JWKS_PATH,
        "scopes_supported": sorted(SUPPORTED_SCOPES),
        # No authorization endpoint, so no response type: the list is required but empty.
        "response_types_supported": [],
        "grant_types_supported": sorted(GRANTS),
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "service_documentation": issuer + "/docs",
    }
