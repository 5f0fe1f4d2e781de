"""Argon2 verification in a working memory that a thread keeps, instead of a fresh one each time.

libargon2 allocates its whole memory cost (19 MiB or more) for every hash and frees it after.
Where that comes from a fresh mapping (as ``erpauth.allocator`` arranges, so that the memory
goes back to the system), the kernel must fault in and zero every page again on each check,
which costs several milliseconds of system time beside the ~20 ms of the hash. A hashing
thread that checks password after password can instead hand libargon2 the same mapping each
time, through the allocation callbacks of its context, and unmap it once it has been idle a
while (``WorkingMemory.release``).

libargon2 still wipes the memory before it calls the free callback, so nothing derived from a
password stays in the kept mapping between checks.

This uses argon2-cffi's raw binding to ``argon2_ctx``, whose context structure may change
between releases of argon2-cffi-bindings: the fields are set by name, and the version is
pinned in pyproject.toml.
"""

import base64
import hmac
import mmap
import re
from dataclasses import dataclass

from _argon2_cffi_bindings import ffi, lib

# The encoded form libargon2 writes and reads ("PHC string"): variant, version (absent in
# version 1.0 hashes), costs, then salt and hash in unpadded standard base64. As strict as
# libargon2's own decoder, so that no stored value passes here that argon2-cffi would refuse:
# ASCII digits only (``\d`` would take any script's), no leading zeros.
_NUMBER = r"(0|[1-9][0-9]{0,9})"
_ENCODED = re.compile(
    rf"\$(argon2id|argon2i|argon2d)(?:\$v={_NUMBER})?\$m={_NUMBER},t={_NUMBER},p={_NUMBER}"
    r"\$([A-Za-z0-9+/]{11,})\$([A-Za-z0-9+/]{6,})"
)
# Costs are 32-bit in argon2_context; a larger number is no hash libargon2 made (and cffi
# would raise OverflowError, not InvalidHash, when it is put in the context).
_MAX_COST = 0xFFFFFFFF
_TYPES = {"argon2id": lib.Argon2_id, "argon2i": lib.Argon2_i, "argon2d": lib.Argon2_d}
_VERSION_1_0 = 0x10
_VERSIONS = (_VERSION_1_0, lib.ARGON2_VERSION_13)


class InvalidHash(ValueError):
    """The stored value is not an argon2 hash this module can check."""


@dataclass(frozen=True)
class EncodedHash:
    """An argon2 hash as stored, taken apart."""

    type: int
    version: int
    memory_kib: int
    time_cost: int
    parallelism: int
    salt: bytes
    digest: bytes

    @classmethod
    def parse(cls, encoded: str) -> "EncodedHash":
        found = _ENCODED.fullmatch(encoded)
        if found is None:
            raise InvalidHash("not an encoded argon2 hash")
        variant, version, memory, time_cost, parallelism, salt, digest = found.groups()
        number = int(version) if version else _VERSION_1_0
        if number not in _VERSIONS:
            raise InvalidHash("not a version of argon2")
        if max(int(memory), int(time_cost), int(parallelism)) > _MAX_COST:
            raise InvalidHash("a cost too large for argon2")
        return cls(
            type=_TYPES[variant],
            version=number,
            memory_kib=int(memory),
            time_cost=int(time_cost),
            parallelism=int(parallelism),
            salt=_unpadded_b64(salt),
            digest=_unpadded_b64(digest),
        )


def _unpadded_b64(text: str) -> bytes:
    if len(text) % 4 == 1:
        raise InvalidHash("not base64")
    decoded = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    # Python ignores set bits after the last whole byte; libargon2 refuses them.
    if base64.b64encode(decoded).rstrip(b"=") != text.encode():
        raise InvalidHash("not canonical base64")
    return decoded


class WorkingMemory:
    """One mapping that libargon2 works in, check after check, until ``release``.

    Belongs to one thread at a time: a check hands it to libargon2 through the allocation
    callbacks and gets it back when libargon2 frees it.
    """

    def __init__(self) -> None:
        self._mapping: mmap.mmap | None = None
        self._pointer = ffi.NULL
        self.mappings_made = 0
        # Kept as attributes: libargon2 calls them while a check runs.
        self.allocate = ffi.callback("int(uint8_t **, size_t)", self._allocate, error=-1)
        self.free = ffi.callback("void(uint8_t *, size_t)", self._free)

    @property
    def kept_bytes(self) -> int:
        return len(self._mapping) if self._mapping is not None else 0

    @property
    def address(self) -> int | None:
        """Where the kept mapping starts, while there is one."""
        return int(ffi.cast("uintptr_t", self._pointer)) if self._mapping is not None else None

    def release(self) -> None:
        """Gives the mapping back to the system; the next check maps a new one."""
        if self._mapping is None:
            return
        ffi.release(self._pointer)
        self._pointer = ffi.NULL
        self._mapping.close()
        self._mapping = None

    def _allocate(self, memory: object, size: int) -> int:
        if self._mapping is None or len(self._mapping) < size:
            # The first check, or a stored hash with a larger memory cost than the last one.
            self.release()
            mapping = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            if hasattr(mmap, "MADV_HUGEPAGE"):
                # Fewer faults at the first check, fewer TLB misses in every one.
                mapping.madvise(mmap.MADV_HUGEPAGE)
            self._mapping = mapping
            self._pointer = ffi.from_buffer("uint8_t[]", mapping, require_writable=True)
            self.mappings_made += 1
        memory[0] = self._pointer  # type: ignore[index]
        return 0

    def _free(self, memory: object, size: int) -> None:
        """Nothing to do: libargon2 has wiped the memory, and the mapping is kept."""


def verify(encoded: str, password: bytes, memory: WorkingMemory | None = None) -> bool:
    """Whether ``password`` matches the argon2 hash ``encoded``; raises InvalidHash.

    With ``memory``, libargon2 works in that kept mapping; without, it allocates as usual.
    """
    stored = EncodedHash.parse(encoded)
    out = ffi.new("uint8_t[]", len(stored.digest))
    secret = ffi.from_buffer("uint8_t[]", password)
    salt = ffi.from_buffer("uint8_t[]", stored.salt)
    context = ffi.new(
        "argon2_context *",
        {
            "out": out,
            "outlen": len(stored.digest),
            "pwd": secret,
            "pwdlen": len(password),
            "salt": salt,
            "saltlen": len(stored.salt),
            "t_cost": stored.time_cost,
            "m_cost": stored.memory_kib,
            "lanes": stored.parallelism,
            "threads": stored.parallelism,
            "version": stored.version,
            "allocate_cbk": memory.allocate if memory is not None else ffi.NULL,
            "free_cbk": memory.free if memory is not None else ffi.NULL,
            "flags": lib.ARGON2_DEFAULT_FLAGS,
        },
    )
    result = lib.argon2_ctx(context, stored.type)
    if result != lib.ARGON2_OK:
        # Costs or lengths that libargon2 refuses: the value cannot be a hash it made.
        raise InvalidHash(ffi.string(lib.argon2_error_message(result)).decode())
    return hmac.compare_digest(ffi.buffer(out)[:], stored.digest)
