"""OAuth 2.0 error responses, one class per error code (RFC 6749 §5.2, RFC 6750 §3.1)."""

import json


class OAuthError(Exception):
    """An error the token endpoint or a protected resource answers with."""

    error = "invalid_request"
    status_code = 400

    def __init__(self, description: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.headers = headers or {}

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


class InvalidRequest(OAuthError):
    error = "invalid_request"


class InvalidClient(OAuthError):
    error = "invalid_client"
    status_code = 401


class InvalidGrant(OAuthError):
    error = "invalid_grant"


class UnauthorizedClient(OAuthError):
    error = "unauthorized_client"


class UnsupportedGrantType(OAuthError):
    error = "unsupported_grant_type"


class InvalidScope(OAuthError):
    error = "invalid_scope"


class TemporarilyUnavailable(OAuthError):
    error = "temporarily_unavailable"
    status_code = 503


class BearerError(OAuthError):
    """RFC 6750 §3: the challenge goes into ``WWW-Authenticate``."""

    status_code = 401

    def __init__(self, description: str, realm: str) -> None:
        super().__init__(description)
        self.headers = {"WWW-Authenticate": self.challenge(realm)}

    def challenge(self, realm: str) -> str:
        return (
            f"Bearer realm={_quote(realm)}, error={_quote(self.error)}, "
            f"error_description={_quote(self.description)}"
        )


class MissingToken(BearerError):
    """No credentials at all: the challenge carries no error code (RFC 6750 §3.1)."""

    error = "unauthorized"

    def challenge(self, realm: str) -> str:
        return f"Bearer realm={_quote(realm)}"


class InvalidToken(BearerError):
    error = "invalid_token"


class MalformedAuthorization(BearerError):
    error = "invalid_request"
    status_code = 400


def _quote(value: str) -> str:
    # A quoted-string may not hold '"' or '\' unescaped; json.dumps escapes both.
    return json.dumps(value, ensure_ascii=True)
