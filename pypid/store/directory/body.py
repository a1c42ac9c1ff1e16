"""
Files on disk opened for a response: an open descriptor read with
C{pread}, the cheapest way there is to serve a file from Python (no seek,
no buffering, no thread). Used by the directory store and by the upstream
cache's own directory.

Opening and reading a regular file is done on the reactor thread: with the
page cache warm it costs less than a hop to a thread would.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING, Callable, Optional

from zope.interface import implementer

from pypid.store.interfaces import IBody

if TYPE_CHECKING:
    from twisted.web.server import Request

#: Opening a file to serve never blocks (a FIFO put in its place) and never
#: makes a terminal the controlling one.
OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)


def open_regular(path: str, flags: int = 0) -> Optional[tuple[int, os.stat_result]]:
    """
    Open the regular file at C{path} for reading (with C{flags} added):
    its descriptor, which the caller closes, and its C{fstat}; L{None} when
    there is no regular file there.
    """
    try:
        fd = os.open(path, OPEN_FLAGS | flags)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            return fd, st
    except OSError:
        pass
    os.close(fd)
    return None


def unchanged(fd: int, identity: tuple[int, int, int]) -> bool:
    """
    Whether the file open at C{fd} is still as it was when C{identity}
    (size, mtime, ctime) was taken: every write sets its times. Blocking
    (one fstat).
    """
    st = os.fstat(fd)
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns) == identity


@implementer(IBody)
class FileBody:
    """
    An L{IBody} over an open regular file: small answers are one C{pread},
    large ones stream through L{pypid.web.files.FileSender}, which reads the
    descriptor a chunk at a time and closes it.

    @param on_close: called once when the body is let go (closed, or its
        request over), e.g. to unpin the file from a cache.
    """

    # One per download: slots make it cheap to make and to read.
    __slots__ = ("fd", "size", "mtime_ns", "redirect", "_on_close", "_ctime_ns")

    def __init__(self, fd: int, st: os.stat_result, on_close: Optional[Callable[[], object]] = None) -> None:
        self.fd: Optional[int] = fd
        self.size = st.st_size
        self.mtime_ns = st.st_mtime_ns
        self._ctime_ns = st.st_ctime_ns
        self.redirect: Optional[str] = None
        self._on_close = on_close

    @property
    def identity(self) -> tuple[int, int, int]:
        """What any write to the file changes: its size, modification and change times, as opened."""
        return (self.size, self.mtime_ns, self._ctime_ns)

    @classmethod
    def open(cls, path: str, on_close: Optional[Callable[[], object]] = None) -> Optional["FileBody"]:
        """The regular file at C{path}, or L{None} (C{on_close} is then not called)."""
        opened = open_regular(path)
        return None if opened is None else cls(opened[0], opened[1], on_close)

    def read(self, offset: int, count: int) -> bytes:
        # One pread in the turn the file was opened (and its fstat compared
        # with the index): no check after it, which would cost a small
        # download a quarter of its time. Streams check (FileSender).
        if self.fd is None:
            return b""
        try:
            return os.pread(self.fd, count, offset)
        except OSError:
            return b""

    def stream(self, request: Request, offset: int, count: int) -> None:
        from pypid.web.files import FileSender

        fd, self.fd = self.fd, None
        if fd is None:
            request.loseConnection()
            return
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            request.notifyFinish().addBoth(lambda _: on_close())
        identity = self.identity
        FileSender(request, fd, offset, count, lambda fd: unchanged(fd, identity)).start()

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()
