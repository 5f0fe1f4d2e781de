"""Operator passwords, hashed with argon2id."""

import argon2

from erpauth.config import Settings
from erpauth.security import argon2_memory
from erpauth.security.argon2_memory import InvalidHash, WorkingMemory

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256


class PasswordHasher:
    """Hashes and verifies passwords; the cost comes from the settings."""

    def __init__(self, settings: Settings) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            type=argon2.Type.ID,
        )
        # Verifying against this hash when no operator matches makes an unknown e-mail cost
        # as much time as a wrong password.
        self._dummy_hash = self._hasher.hash("erpauth-no-such-operator")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(
        self, password_hash: str | None, password: str, memory: WorkingMemory | None = None
    ) -> bool:
        """True when the password matches; with no hash, spends the same time and says no.

        ``memory``: argon2's working memory, kept by a hashing thread between checks.
        """
        try:
            matched = argon2_memory.verify(
                password_hash or self._dummy_hash,
                password[:MAX_PASSWORD_LENGTH].encode(),
                memory,
            )
        except InvalidHash:
            return False
        # Not "is not None": an empty stored hash was checked against the dummy hash above,
        # whose password must never let anyone in.
        return matched and bool(password_hash)

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)


def password_problem(password: str) -> str | None:
    """Why a new password is not acceptable, or None when it is."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"the password must be at least {MIN_PASSWORD_LENGTH} characters long"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"the password must be at most {MAX_PASSWORD_LENGTH} characters long"
    return None
