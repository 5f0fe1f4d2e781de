"""Keys that sign access tokens, and the JWKS that publishes their public halves."""

import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from sqlalchemy import select
from sqlalchemy.orm import Session

from erpauth.security.secrets import SecretBox
from erpauth.storage.db import Database
from erpauth.storage.models import SigningKey

ALGORITHM = "ES256"

# How often a process re-reads the key table, so a key rotated through one instance
# is used by every other instance soon after.
RELOAD_SECONDS = 30.0
# A kid not seen may be a key another instance just made: looked for at most this often.
UNKNOWN_KID_RELOAD_SECONDS = 1.0


@dataclass(frozen=True)
class LoadedKey:
    kid: str
    private_key: ec.EllipticCurvePrivateKey
    public_key: ec.EllipticCurvePublicKey
    public_jwk: dict[str, Any]
    created_at: datetime


def create_signing_key(session: Session, box: SecretBox) -> SigningKey:
    """Makes a new P-256 key; being the newest, it signs from now on."""
    private_key = ec.generate_private_key(ec.SECP256R1())
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    # Hex, not base64url: a kid starting with '-' would read as an option on the CLI.
    kid = secrets.token_hex(12)
    jwk = ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    jwk.update({"kid": kid, "use": "sig", "alg": ALGORITHM})

    row = SigningKey(
        kid=kid,
        algorithm=ALGORITHM,
        private_key_encrypted=box.encrypt(pem),
        public_jwk=jwk,
        created_at=datetime.now(UTC),
    )
    session.add(row)
    session.flush()
    return row


def ensure_signing_key(session: Session, box: SecretBox) -> None:
    """Makes the first key at first start."""
    exists = session.scalar(select(SigningKey.kid).where(SigningKey.retired_at.is_(None)).limit(1))
    if exists is None:
        create_signing_key(session, box)


class KeyRing:
    """The keys this process signs and verifies with, re-read from the database now and then."""

    def __init__(self, database: Database, box: SecretBox) -> None:
        self._database = database
        self._box = box
        self._lock = threading.Lock()
        # Requests naming unknown kids at once (anyone can send such a token) share one reload.
        self._unknown_kid_lock = threading.Lock()
        self._keys: dict[str, LoadedKey] = {}
        self._signing: LoadedKey | None = None
        self._loaded_at = 0.0

    def signing_key(self) -> LoadedKey:
        self._reload_if_stale()
        if self._signing is None:
            raise RuntimeError("no signing key: run `erpauth init` or `erpauth keys-rotate`")
        return self._signing

    def verification_key(self, kid: str) -> LoadedKey | None:
        self._reload_if_stale()
        key = self._keys.get(kid)
        if key is None and time.monotonic() - self._loaded_at > UNKNOWN_KID_RELOAD_SECONDS:
            # A kid we have not seen may belong to a key another instance just made.
            with self._unknown_kid_lock:
                if time.monotonic() - self._loaded_at > UNKNOWN_KID_RELOAD_SECONDS:
                    self.reload()
            key = self._keys.get(kid)
        return key

    def jwks(self) -> dict[str, Any]:
        self._reload_if_stale()
        return {"keys": [key.public_jwk for key in self._keys.values()]}

    def would_reload(self, kid: str) -> bool:
        """True when ``verification_key(kid)`` would read the database before answering."""
        age = time.monotonic() - self._loaded_at
        return age > RELOAD_SECONDS or (kid not in self._keys and age > UNKNOWN_KID_RELOAD_SECONDS)

    def signing_would_reload(self) -> bool:
        """True when ``signing_key()`` would read the database before answering."""
        return time.monotonic() - self._loaded_at > RELOAD_SECONDS

    def reload(self) -> None:
        started = time.monotonic()
        with self._database.session() as session:
            rows = session.scalars(
                select(SigningKey)
                .where(SigningKey.retired_at.is_(None))
                .order_by(SigningKey.created_at.desc())
            ).all()
            loaded = [self._load(row) for row in rows]

        with self._lock:
            if started < self._loaded_at:
                return  # a reload that began later has finished first; its view is newer
            self._keys = {key.kid: key for key in loaded}
            self._signing = loaded[0] if loaded else None
            self._loaded_at = started

    def _reload_if_stale(self) -> None:
        if time.monotonic() - self._loaded_at > RELOAD_SECONDS:
            self.reload()

    def _load(self, row: SigningKey) -> LoadedKey:
        private_key = serialization.load_pem_private_key(
            self._box.decrypt(row.private_key_encrypted).encode(), password=None
        )
        assert isinstance(private_key, ec.EllipticCurvePrivateKey)
        return LoadedKey(
            kid=row.kid,
            private_key=private_key,
            public_key=private_key.public_key(),
            public_jwk=dict(row.public_jwk),
            created_at=row.created_at,
        )
