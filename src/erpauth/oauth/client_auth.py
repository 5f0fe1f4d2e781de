"""Client authentication at the token, revocation and introspection endpoints (RFC 6749 §2.3.1).

The client sends its ID and secret either in an HTTP Basic ``Authorization`` header
(``client_secret_basic``) or as ``client_id`` and ``client_secret`` form fields
(``client_secret_post``); never both.
"""

import base64
import binascii
import re
import uuid
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote_plus

from sqlalchemy import select
from sqlalchemy.orm import Session

from erpauth.domain import audit
from erpauth.domain.audit import Origin
from erpauth.domain.clients import authenticate_client, secret_matches
from erpauth.oauth.errors import InvalidClient, InvalidRequest, OAuthError
from erpauth.services import Services
from erpauth.storage.models import ApiClient

BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="erpauth", charset="UTF-8"'}
MAX_CREDENTIAL_LENGTH = 512
# RFC 6749 Appendix A.1 and A.2: a client ID and a client secret are printable ASCII.
_VSCHARS = re.compile(r"[\x20-\x7e]*")


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    client_secret: str
    method: Literal["client_secret_basic", "client_secret_post"]

    def refusal(self, description: str) -> InvalidClient:
        """The invalid_client error, with the Basic challenge when Basic was used."""
        headers = BASIC_CHALLENGE if self.method == "client_secret_basic" else None
        return InvalidClient(description, headers=headers)


def read_client_credentials(authorization: str | None, form: dict[str, str]) -> ClientCredentials:
    body_id, body_secret = form.get("client_id"), form.get("client_secret")

    if authorization:
        client_id, client_secret = _parse_basic(authorization)
        if body_secret is not None or (body_id is not None and body_id != client_id):
            raise InvalidRequest(
                "send the client credentials either in the Authorization header or in the body, "
                "not both"
            )
        return ClientCredentials(client_id, client_secret, "client_secret_basic")

    if body_id is None or body_secret is None:
        raise InvalidClient(
            "client authentication is required: send client_id and client_secret in an HTTP "
            "Basic Authorization header or in the request body",
            headers=BASIC_CHALLENGE,
        )
    _check_plausible(body_id, body_secret)
    return ClientCredentials(body_id, body_secret, "client_secret_post")


def _parse_basic(authorization: str) -> tuple[str, str]:
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        # RFC 6749 §5.2: an unsupported authentication method is invalid_client.
        raise InvalidClient(
            "this endpoint authenticates API clients only with HTTP Basic, or with client_id "
            "and client_secret in the body",
            headers=BASIC_CHALLENGE,
        )
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidClient(
            "the Authorization header is not valid HTTP Basic", headers=BASIC_CHALLENGE
        ) from exc

    raw_id, colon, raw_secret = decoded.partition(":")
    if not colon or not raw_id or not raw_secret:
        raise InvalidClient(
            "the Authorization header must carry client_id:client_secret", headers=BASIC_CHALLENGE
        )
    # RFC 6749 §2.3.1: both parts are form-urlencoded before they are joined.
    client_id, client_secret = unquote_plus(raw_id), unquote_plus(raw_secret)
    _check_plausible(client_id, client_secret)
    return client_id, client_secret


def _check_plausible(client_id: str, client_secret: str) -> None:
    """Refuses, without looking anything up, credentials that cannot be any client's.

    Besides saving the work, this keeps characters such as NUL away from the database, which
    would fail on them rather than find nothing.
    """
    for value in (client_id, client_secret):
        if len(value) > MAX_CREDENTIAL_LENGTH or not _VSCHARS.fullmatch(value):
            raise InvalidClient("the client credentials are not valid", headers=BASIC_CHALLENGE)


def authenticate_request_client(
    session: Session, services: Services, credentials: ClientCredentials, kind: str, origin: Origin
) -> ApiClient | OAuthError:
    """The authenticated client, or the invalid_client error (recorded) to answer with."""
    client = authenticate_client(
        session, services.box, credentials.client_id, credentials.client_secret
    )
    if client is not None:
        return client

    # A wrong secret for a real client ID belongs in that company's trail: someone is guessing.
    company_id = session.scalar(
        select(ApiClient.company_id).where(ApiClient.client_id == credentials.client_id)
    )
    return refuse_client(session, credentials, kind, origin, company_id)


def check_client_secret(
    session: Session,
    services: Services,
    credentials: ClientCredentials,
    client: ApiClient,
    kind: str,
    origin: Origin,
) -> OAuthError | None:
    """For a grant that read the client by its ID together with other rows: the secret check.

    None when the secret is right, else the invalid_client error (recorded) to answer with.
    """
    if secret_matches(services.box, client, credentials.client_secret):
        return None
    return refuse_client(session, credentials, kind, origin, client.company_id)


def refuse_client(
    session: Session,
    credentials: ClientCredentials,
    kind: str,
    origin: Origin,
    company_id: uuid.UUID | None,
) -> OAuthError:
    """Records a failed client authentication; returns the invalid_client error to answer."""
    audit.record(
        session,
        kind,
        "refused",
        origin,
        company_id=company_id,
        reason="invalid_client",
        attempted_client_id=credentials.client_id[:64],
    )
    return credentials.refusal("the client ID or client secret is wrong")
