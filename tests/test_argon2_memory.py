"""Checking a password in kept working memory gives exactly argon2-cffi's answers, and leaves
nothing of the password behind in that memory."""

import argon2
import pytest
from argon2.low_level import Type, hash_secret

from erpauth.security.argon2_memory import InvalidHash, WorkingMemory, verify
from erpauth.security.passwords import PasswordHasher
from tests.support import make_settings

PASSWORD = "correct horse battery staple"
SALT = b"sixteen byte slt"


def hashed(**options: object) -> str:
    parameters = {
        "time_cost": 1,
        "memory_cost": 1024,
        "parallelism": 1,
        "hash_len": 32,
        "type": Type.ID,
    } | options
    return hash_secret(PASSWORD.encode(), SALT, **parameters).decode()  # type: ignore[arg-type]


# What stored hashes may look like: the service's own, and older or foreign parameters.
STORED = {
    "service default": argon2.PasswordHasher(
        time_cost=2, memory_cost=19 * 1024, parallelism=1
    ).hash(PASSWORD),
    "argon2i": hashed(type=Type.I),
    "argon2d": hashed(type=Type.D),
    "version 1.0 (no v= field)": hashed(version=0x10),
    "two lanes": hashed(parallelism=2),
    "short digest and salt": hash_secret(
        PASSWORD.encode(), b"8 bytes!", 1, 1024, 1, 16, Type.ID
    ).decode(),
}


def cffi_says(stored: str, password: str) -> bool:
    try:
        return argon2.PasswordHasher().verify(stored, password)
    except argon2.exceptions.VerifyMismatchError:
        return False


@pytest.mark.parametrize("name", STORED)
@pytest.mark.parametrize("kept", [False, True], ids=["allocated", "kept memory"])
def test_a_check_agrees_with_argon2_cffi(name: str, kept: bool) -> None:
    stored = STORED[name]
    memory = WorkingMemory() if kept else None

    answers = [verify(stored, password.encode(), memory) for password in (PASSWORD, "wrong")]

    assert answers == [cffi_says(stored, PASSWORD), cffi_says(stored, "wrong")] == [True, False]


def test_a_hash_with_one_digest_character_changed_does_not_match() -> None:
    stored = STORED["service default"]
    # Not the last character: some of its bits lie past the digest's last byte.
    tampered = stored[:-2] + ("A" if stored[-2] != "A" else "B") + stored[-1]

    assert not verify(tampered, PASSWORD.encode(), WorkingMemory())


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "not a hash",
        "$scrypt$ln=16,r=8,p=1$c2FsdA$aGFzaA",
        STORED["service default"] + "\n",
        STORED["service default"][:-30],
        STORED["service default"].replace("m=19456", "m=1"),  # below argon2's minimum
        STORED["service default"].replace("t=2", "t=0"),
        STORED["service default"].replace("$v=19$", "$v=99$"),
        STORED["service default"][:-1] + "!",
        "$argon2id$v=19$m=19456,t=2,p=1$c2l4dGVlbiBieXRlIHNsdA$=",
    ],
)
def test_a_value_that_is_no_argon2_hash_is_refused_not_checked(stored: str) -> None:
    with pytest.raises(InvalidHash):
        verify(stored, PASSWORD.encode(), WorkingMemory())


def _last_character_with_spare_bits_set(stored: str) -> str:
    """The hash with its digest's last base64 character carrying bits past the last byte."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(stored[-1])
    return stored[:-1] + alphabet[last | 1]  # a 32-byte digest leaves the lowest 2 bits spare


# Values argon2-cffi refuses that a looser parse would take apart into a checkable hash, with
# the right password then matching (or, for costs beyond 32 bits, raising OverflowError).
LOOKALIKES = {
    "non-ASCII digits": STORED["service default"].replace("m=19456", "m=\uff11\uff19456"),
    "leading zero": STORED["service default"].replace("t=2", "t=02"),
    "spare base64 bits": _last_character_with_spare_bits_set(STORED["service default"]),
    "memory cost past 32 bits": STORED["service default"].replace("m=19456", "m=4294986752"),
    "time cost past 32 bits": STORED["service default"].replace("t=2", "t=4294967298"),
}


@pytest.mark.parametrize("name", LOOKALIKES)
def test_a_value_argon2_cffi_refuses_is_refused_here_too(name: str, tmp_path) -> None:
    stored = LOOKALIKES[name]
    # InvalidHashError, or UnicodeEncodeError (a ValueError too) for a hash not in ASCII.
    with pytest.raises((ValueError, argon2.exceptions.VerificationError)):
        argon2.PasswordHasher().verify(stored, PASSWORD)

    with pytest.raises(InvalidHash):
        verify(stored, PASSWORD.encode(), WorkingMemory())
    assert not PasswordHasher(make_settings(tmp_path, None)).verify(stored, PASSWORD)


def test_the_password_hasher_says_no_to_a_broken_hash_and_to_no_hash(tmp_path) -> None:
    hasher = PasswordHasher(make_settings(tmp_path, None))

    assert hasher.verify(hasher.hash(PASSWORD), PASSWORD, WorkingMemory())
    assert not hasher.verify("not a hash", PASSWORD, WorkingMemory())
    assert not hasher.verify(None, PASSWORD, WorkingMemory())
    assert not hasher.verify(None, "erpauth-no-such-operator", WorkingMemory())
    assert not hasher.verify("", "erpauth-no-such-operator", WorkingMemory())


def test_the_kept_memory_holds_nothing_of_the_last_password_after_a_check() -> None:
    memory = WorkingMemory()

    assert verify(STORED["service default"], PASSWORD.encode(), memory)

    kept = memory._mapping
    assert kept is not None and len(kept) >= 19 * 1024 * 1024
    assert kept[:] == bytes(len(kept)), "libargon2 wipes its memory before handing it back"


def test_a_hash_with_a_larger_memory_cost_gets_a_larger_mapping() -> None:
    memory = WorkingMemory()
    verify(hashed(memory_cost=1024), PASSWORD.encode(), memory)
    small = memory.kept_bytes

    assert verify(hashed(memory_cost=4096), PASSWORD.encode(), memory)
    assert verify(hashed(memory_cost=1024), PASSWORD.encode(), memory)

    assert (small, memory.kept_bytes, memory.mappings_made) == (1024 * 1024, 4 * 1024 * 1024, 2)
