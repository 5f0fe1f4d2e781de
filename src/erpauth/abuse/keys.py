"""Counter keys: bounded in length, and without e-mail addresses or other raw input."""

import hashlib
import re

_PLAIN = re.compile(r"^[A-Za-z0-9.:_-]{1,64}$")


def key_part(value: str | None) -> str:
    """The value itself when short and plain (an IP, a client ID), else a digest of it."""
    if value is None:
        return "none"
    if _PLAIN.match(value):
        return value
    return digest(value)


def digest(value: str) -> str:
    """A short digest that names a value (e.g. an account) without revealing it."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:24]
