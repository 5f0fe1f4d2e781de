"""Strict reading of ``application/x-www-form-urlencoded`` request bodies (RFC 6749 §3.2)."""

from collections import Counter
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from erpauth.oauth.errors import InvalidRequest

FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FIELDS = 32
_NO_NUL = "^[^\\u0000]*$"


async def read_form(request: Request) -> dict[str, str]:
    """The parameters of a token request; empty ones count as absent (RFC 6749 §3.1)."""
    media_type, *params = request.headers.get("content-type", "").split(";")
    if media_type.strip().lower() != FORM_TYPE:
        if request.url.query and not media_type.strip():
            raise InvalidRequest(
                f"send the parameters in the request body as {FORM_TYPE}, not in the query string"
            )
        raise InvalidRequest(f"send the parameters as {FORM_TYPE}, not as a JSON or other body")
    # Media type parameters other than charset mean nothing here (RFC 9110 §8.3.1).
    charset = "utf-8"
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    if charset not in ("utf-8", "utf8"):
        raise InvalidRequest("the form must be encoded in UTF-8")

    body = await request.body()
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except UnicodeDecodeError as exc:
        raise InvalidRequest("the form is not valid UTF-8") from exc
    except ValueError as exc:
        raise InvalidRequest(f"the form has more than {MAX_FIELDS} parameters") from exc

    counts = Counter(name for name, _ in pairs)
    repeated = sorted(name for name, count in counts.items() if count > 1)
    if repeated:
        raise InvalidRequest(f"the parameter {repeated[0]!r} is repeated")
    if any("\x00" in name or "\x00" in value for name, value in pairs):
        raise InvalidRequest("the form holds a NUL character")
    return {name: value for name, value in pairs if value}


def form_schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """What ``read_form`` accepts, as the JSON Schema of the OpenAPI request body.

    Parameters the endpoint does not know are ignored (RFC 6749 §3.1), but they too may appear
    only once and hold no NUL.
    """
    text = {"type": "string", "pattern": _NO_NUL}
    return {
        "type": "object",
        "required": required,
        "properties": {name: text | field for name, field in properties.items()},
        "additionalProperties": text,
        "propertyNames": {"pattern": _NO_NUL},
        "maxProperties": MAX_FIELDS,
    }
