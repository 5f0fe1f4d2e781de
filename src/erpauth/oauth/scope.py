"""Scope parameter (RFC 6749 §3.3)."""

from erpauth.domain.tokens import DEFAULT_SCOPE, SUPPORTED_SCOPES
from erpauth.oauth.errors import InvalidScope


def parse_scope(requested: str | None) -> str:
    """The scope to grant: the requested one when every part is known, else an error."""
    if not requested:
        return DEFAULT_SCOPE
    parts = sorted(set(requested.split()))
    unknown = [part for part in parts if part not in SUPPORTED_SCOPES]
    if unknown:
        supported = ", ".join(sorted(SUPPORTED_SCOPES))
        raise InvalidScope(f"unknown scope {unknown[0]!r}; supported: {supported}")
    return " ".join(parts)
