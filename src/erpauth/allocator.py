"""Keeps glibc from holding on to the memory that password hashing borrows.

Each argon2id verification allocates its memory cost (19 MiB or more) and frees it. glibc
raises its mmap threshold after such a free, so later hashes come from per-thread arenas
that are never given back: a worker's resident memory then grows with every thread that ever
hashed. A fixed threshold sends these blocks to mmap (returned on free), and two arenas keep
the rest compact.
"""

import ctypes
import ctypes.util
import logging

log = logging.getLogger("erpauth")

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 1024 * 1024


def limit_retention() -> bool:
    """Applies the settings; False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(_M_ARENA_MAX, 2))
