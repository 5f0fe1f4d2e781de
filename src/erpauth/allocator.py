"""Keeps glibc from holding on to the memory that password hashing borrows, cheaply.

Password checks at sign-in run in working memory that the hashing threads keep and give back
themselves (``erpauth.abuse.hashing``); what follows is about the rest: hashing a new password
(set, changed or re-hashed) and any other large allocation.

Each argon2id hash allocates its memory cost (19 MiB or more) and frees it. glibc
raises its mmap threshold after such a free, so later hashes come from per-thread arenas
that are never given back: a worker's resident memory then grows with every thread that ever
hashed. A fixed threshold sends these blocks to mmap (returned on free), and two arenas keep
the rest compact.

Fresh mappings cost page faults, though: 4,865 of them for 19 MiB in 4 KiB pages, about 10 ms
of kernel time per hash, half again the hash itself. With glibc's ``hugetlb``
tunable those mappings are made of transparent huge pages (where the kernel allows them,
as by default): a few hundred faults, about 1.5 ms. Tunables are read when a process starts,
so ``erpauth serve`` runs itself again with the tunable set (``with_huge_pages``).
"""

import ctypes
import ctypes.util
import logging
import os
import platform
import sys

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


HUGE_PAGES = "glibc.malloc.hugetlb=1"


def with_huge_pages() -> None:
    """Runs this command again with glibc's huge-page tunable set, unless it is set already.

    Replaces the process (same PID, arguments and environment plus the tunable); returns
    where there is nothing to do: not glibc, or the tunable (any value) chosen already.
    """
    if platform.libc_ver()[0] != "glibc":
        return
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" in tunables:
        return
    os.environ["GLIBC_TUNABLES"] = f"{tunables}:{HUGE_PAGES}" if tunables else HUGE_PAGES
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, sys.orig_argv)  # noqa: S606 - this very command, again
