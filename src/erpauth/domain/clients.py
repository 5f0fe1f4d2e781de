"""The company's API client: authenticating it and managing its two secrets."""

from datetime import UTC, datetime
from typing import Literal, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from erpauth.security.secrets import SecretBox, new_client_secret
from erpauth.storage.models import ApiClient

SecretSlot = Literal["primary", "secondary"]


def authenticate_client(
    session: Session, box: SecretBox, client_id: str, client_secret: str
) -> ApiClient | None:
    """The client when the secret matches either of its two secrets, else None."""
    # The company comes in the same query: every caller goes on to check its license.
    client = session.scalar(
        select(ApiClient)
        .options(joinedload(ApiClient.company))
        .where(ApiClient.client_id == client_id)
        .limit(1)
    )
    if client is None:
        compare_with_no_client(box, client_secret)
        return None

    return client if secret_matches(box, client, client_secret) else None


class ClientSecrets(Protocol):
    """A client's two encrypted secrets: an ApiClient, or a row read without the ORM."""

    primary_secret_encrypted: str
    secondary_secret_encrypted: str


def secret_matches(box: SecretBox, client: ClientSecrets, client_secret: str) -> bool:
    """Whether the secret is either of the client's two, compared in constant time."""
    primary_ok = box.matches(client.primary_secret_encrypted, client_secret)
    secondary_ok = box.matches(client.secondary_secret_encrypted, client_secret)
    return primary_ok or secondary_ok


def compare_with_no_client(box: SecretBox, client_secret: str) -> None:
    """The work of ``secret_matches`` (one check per secret), for a client ID that matches no
    client."""
    box.matches_none(client_secret)
    box.matches_none(client_secret)


def reveal_secret(box: SecretBox, client: ApiClient, slot: SecretSlot) -> str:
    encrypted = (
        client.primary_secret_encrypted if slot == "primary" else client.secondary_secret_encrypted
    )
    return box.decrypt(encrypted)


def regenerate_secret(session: Session, box: SecretBox, client: ApiClient, slot: SecretSlot) -> str:
    """Replaces one secret; the other stays valid so integrations can move over."""
    secret = new_client_secret()
    now = datetime.now(UTC)
    if slot == "primary":
        client.primary_secret_encrypted = box.encrypt(secret)
        client.primary_secret_updated_at = now
    else:
        client.secondary_secret_encrypted = box.encrypt(secret)
        client.secondary_secret_updated_at = now
    session.flush()
    return secret
