"""
The C allocator's thresholds, set for a server that sends large bodies.

glibc serves every allocation of 128 KiB or more with its own mmap() and
gives it back with munmap() when freed. A page body, a file chunk or a
response buffer of that size then costs a fresh mapping per request, and a
page fault (and zeroing) per 4 KiB touched: serving a 130 KiB `/simple/`
page spent a third of its time there. Raising the threshold keeps such
blocks in the heap, where they are reused; the trim threshold keeps freed
heap from being returned (and faulted in again) at every turn.
"""

from __future__ import annotations

import ctypes
import ctypes.util

#: mallopt() parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: Blocks below this come from the heap. Larger ones (a multi-megabyte
#: page at 100,000 files) still get their own mapping.
MMAP_THRESHOLD = 4 * 1024 * 1024
#: Free heap kept before it is handed back to the system.
TRIM_THRESHOLD = 32 * 1024 * 1024


def tune(libc_name: str | None = None) -> bool:
    """
    Set the thresholds; C{True} if the C library took them. Anything but
    glibc (musl, macOS) is left alone.
    """
    name = libc_name or ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
