"""
The C allocator's thresholds, set for a server that sends large bodies.

glibc serves every allocation of 128 KiB or more with its own mmap() and
gives it back with munmap() when freed. A page body, a file chunk or a
response buffer of that size then costs a fresh mapping per request, and a
page fault (and zeroing) per 4 KiB touched: serving a 130 KiB `/simple/`
page spent a third of its time there. Raising the threshold keeps such
blocks in the heap, where they are reused; the trim threshold keeps freed
heap from being returned (and faulted in again) at every turn.

What a burst of connections leaves free in the middle of the heap is not
returned by either rule (glibc's own defaults keep it too): after a burst
of 3,000 connections RSS stayed at its peak. L{HeapTrimmer} gives it back
once the burst is over, with C{malloc_trim(0)}, when RSS has grown well
over what it was after the last trim.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Callable, Optional

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from pypid.counts import mib

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


def _libc(libc_name: Optional[str] = None):
    name = libc_name or ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def trim_function(libc_name: Optional[str] = None) -> Optional[Callable[[int], int]]:
    """glibc's C{malloc_trim}, or L{None} (another C library). Blocking: call it in a thread."""
    libc = _libc(libc_name)
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is None:
        return None
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    return trim


def resident_bytes() -> int:
    """This process's RSS, from /proc/self/statm (0 where there is none)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class HeapTrimmer(Service):
    """
    Every C{interval} seconds, when RSS is more than C{slack} bytes over
    what it was after the last trim (or its lowest since), C{trim(0)} runs
    in a thread (C{threads}): a burst is over, and the heap it freed goes
    back to the system. When idle it costs one read of /proc/self/statm per
    interval; during a burst, at most one trim per interval.
    """

    log = Logger()
    #: Seconds between looks at RSS.
    INTERVAL = 30.0
    #: Growth of RSS that is worth a trim.
    SLACK = 16 * 1024 * 1024

    def __init__(self, clock, threads, trim: Callable[[int], int],
                 resident: Callable[[], int] = resident_bytes,
                 interval: float = INTERVAL, slack: int = SLACK) -> None:
        self.clock = clock
        self.threads = threads
        self.trim = trim
        self.resident = resident
        self.interval = interval
        self.slack = slack
        self._loop: Optional[LoopingCall] = None
        self._baseline = 0
        self._trimming = False
        #: What the trims so far gave back, in bytes.
        self.freed = 0

    def startService(self) -> None:
        super().startService()
        self._baseline = self.resident()
        self._loop = LoopingCall(self.check)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=False)

    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def check(self) -> None:
        if self._trimming:
            return
        now = self.resident()
        if now - self._baseline < self.slack:
            self._baseline = min(self._baseline, now)
            return
        self._trimming = True

        def done(_) -> None:
            self._trimming = False
            after = self.resident()
            self.freed += max(0, now - after)
            self.log.debug("heap trimmed: RSS {before} -> {after}", before=mib(now), after=mib(after))
            self._baseline = after

        self.threads(self.trim, 0).addBoth(done)


def heap_trimmer(clock, threads, libc_name: Optional[str] = None) -> Optional[HeapTrimmer]:
    """A L{HeapTrimmer} with glibc's C{malloc_trim}, or L{None} without glibc or /proc."""
    trim = trim_function(libc_name)
    if trim is None or not resident_bytes():
        return None
    return HeapTrimmer(clock, threads, trim)
