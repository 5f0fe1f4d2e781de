"""Random credentials and their encryption at rest."""

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from erpauth.config import Settings
from erpauth.security.lru import LRU

# Encrypted secrets whose digests a SecretBox remembers (two per API client).
REMEMBERED_SECRETS = 4096


def new_client_secret() -> str:
    """A client secret: 64 characters of the URL-safe alphabet, 384 bits of entropy."""
    return secrets.token_urlsafe(48)


def new_password() -> str:
    """A generated password for demo accounts and resets: 24 URL-safe characters."""
    return secrets.token_urlsafe(18)


def sha256_hex(value: str) -> str:
    """Digest under which a high-entropy token is stored and looked up."""
    return hashlib.sha256(value.encode()).hexdigest()


def fingerprint(value: str) -> str:
    """A short, non-reversible tag that names a secret in logs without revealing it."""
    return sha256_hex(value)[:12]


def equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class UndecryptableSecret(Exception):
    """A stored value was encrypted with a key that is not configured (any more)."""


class SecretBox:
    """Encrypts values stored in the database (client secrets, private keys).

    Several keys may be configured, newest first: new values use the first, old values
    decrypt with any of them, so the key can be rotated without downtime.
    """

    def __init__(self, keys: list[str]) -> None:
        self._keys = keys
        self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])
        # For matches: secrets this process has decrypted, kept only as digests under a key
        # of its own that never leaves it.
        self._compare_key = secrets.token_bytes(32)
        self._digests: LRU[str, bytes] = LRU(REMEMBERED_SECRETS)
        # For matches_none: the digest of a secret nobody has.
        self._no_secret = self._digest(new_client_secret())

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise UndecryptableSecret(
                "a stored secret cannot be decrypted with the configured ERPAUTH_SECRET_KEY; "
                "configure the key it was encrypted with (old keys may follow the new one)"
            ) from exc

    def matches(self, token: str, value: str) -> bool:
        """Whether ``value`` is the secret encrypted in ``token``, compared in constant time.

        The digests of the two are compared. The stored secret's digest is remembered by its
        encrypted form, so a client that keeps calling is not decrypted on every request,
        and the secret itself is not kept. A regenerated secret is encrypted anew, so it is
        never mistaken for the old one.
        """
        stored = self._digests.get(token)
        if stored is None:
            stored = self._digest(self.decrypt(token))
            self._digests.put(token, stored)
        return hmac.compare_digest(self._digest(value), stored)

    def matches_none(self, value: str) -> bool:
        """``matches`` against a secret nobody has: always False, at the cost of a check whose
        stored digest is remembered. For a client ID that names no client, so that it takes
        as long as a wrong secret for a real one."""
        return hmac.compare_digest(self._digest(value), self._no_secret)

    def _digest(self, value: str) -> bytes:
        return hmac.new(self._compare_key, value.encode(), hashlib.sha256).digest()

    def derive(self, purpose: str) -> str:
        """A stable value tied to the server key, e.g. for demo passwords."""
        key = base64.urlsafe_b64decode(self._keys[0])
        mac = hmac.new(key, purpose.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")[:24]


def load_secret_box(settings: Settings) -> SecretBox:
    if settings.secret_key:
        return SecretBox([k.strip() for k in settings.secret_key.split(",") if k.strip()])

    key_file = settings.data_dir / "secret.key"
    if not key_file.exists():
        # Another process may make it first; then its key is the one to use.
        with contextlib.suppress(FileExistsError):
            _write_private_file(key_file, Fernet.generate_key().decode())
    return SecretBox([key_file.read_text().strip()])


def _write_private_file(path: Path, content: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
