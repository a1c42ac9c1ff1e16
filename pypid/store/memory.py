"""
An in-memory L{IPackageStore}, for tests: files are bytes in a dict, never
on disk, and its bodies serve those bytes.

Pure apart from Twisted's Deferreds: nothing here blocks on I/O.
"""

from __future__ import annotations

import io
import time
from typing import Callable, Iterable, NamedTuple, Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from pypid.index.model import DistFile, IndexSnapshot
from pypid.store.interfaces import IBody, IPackageStore
from pypid.store.metadata import MetadataError, read_metadata
from pypid.store.snapshot import SnapshotOwner

#: Bytes written to a request at a time when streaming.
CHUNK = 256 * 1024


class Blob(NamedTuple):
    """A stored file: its bytes and modification time."""

    data: bytes
    mtime_ns: int


@implementer(IPushProducer)
class _BytesSender:
    """Writes bytes into a request a chunk at a time, paused and resumed by its transport."""

    def __init__(self, request, data: bytes) -> None:
        self.request = request
        self.data: Optional[bytes] = data
        self.offset = 0
        self.paused = False
        self._writing = False

    def start(self) -> None:
        self.request.registerProducer(self, True)
        self.request.notifyFinish().addErrback(lambda _: self.stopProducing())
        self.resumeProducing()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        if self._writing:
            return
        self._writing = True
        try:
            while not self.paused and self.data is not None and self.offset < len(self.data):
                chunk = self.data[self.offset:self.offset + CHUNK]
                self.offset += len(chunk)
                self.request.write(chunk)
        finally:
            self._writing = False
        if self.data is not None and self.offset >= len(self.data):
            self.data = None
            self.request.unregisterProducer()
            self.request.finish()

    def stopProducing(self) -> None:
        self.data = None


@implementer(IBody)
class MemoryBody:
    """An L{IBody} over bytes; C{later} answers reads with a Deferred, as a remote backend would."""

    redirect = None

    def __init__(self, blob: Blob, later: bool = False) -> None:
        self._data: Optional[bytes] = blob.data
        self.size = len(blob.data)
        self.mtime_ns = blob.mtime_ns
        self._later = later

    def read(self, offset: int, count: int):
        data = self._data[offset:offset + count] if self._data is not None else b""
        return succeed(data) if self._later else data

    def stream(self, request, offset: int, count: int) -> None:
        data, self._data = self._data, None
        if data is None or len(data) < offset + count:
            request.loseConnection()
            return
        _BytesSender(request, data[offset:offset + count]).start()

    def close(self) -> None:
        self._data = None


@implementer(IPackageStore)
class MemoryStore(SnapshotOwner):
    """
    An L{IPackageStore} over files held in memory.

    Files are given as L{DistFile}s (listed at once, ready) with their
    bytes put in with L{put} (a file without bytes is listed but cannot be
    opened), and their core metadata in C{metadata} (else it is read from
    the bytes).

    @param ready: False to start like a store whose first scan has not
        finished (L{make_ready} ends it).
    @param clock: the modification time of files put without one
        (C{seconds()}); the system clock by default.
    @param later: bodies answer C{read} with a Deferred.
    """

    def __init__(
        self,
        files: Iterable[DistFile] = (),
        hash_algo: Optional[str] = "sha256",
        ready: bool = True,
        clock=None,
        later: bool = False,
    ) -> None:
        super().__init__()
        self.hash_algo = hash_algo
        self.snapshot = IndexSnapshot.build(files)
        self.ready = ready
        self._waiting: list[Deferred] = []
        #: Stored bytes by path (a signature at C{<path>.asc}).
        self.contents: dict[str, Blob] = {}
        #: Core metadata by path, for files given without their bytes.
        self.metadata: dict[str, bytes] = {}
        self._now: Callable[[], int] = (
            time.time_ns if clock is None else (lambda: int(clock.seconds() * 1_000_000_000)))
        self._later = later

    def put(self, path: str, data: bytes, mtime_ns: Optional[int] = None) -> None:
        """Store C{data} at C{path} (a listed file's bytes, or a signature) without listing anything."""
        self.contents[path] = Blob(data, self._now() if mtime_ns is None else mtime_ns)

    def whenReady(self) -> Deferred:
        if self.ready:
            return succeed(None)
        d: Deferred = Deferred()
        self._waiting.append(d)
        return d

    def make_ready(self) -> None:
        """Mark the first scan complete, releasing whoever waits for it."""
        self.ready = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def open(self, distfile: DistFile, sidecar: str = "") -> Optional[MemoryBody]:
        blob = self.contents.get(distfile.path + sidecar)
        return None if blob is None else MemoryBody(blob, self._later)

    def readMetadata(self, distfile: DistFile) -> Deferred:
        raw = self.metadata.get(distfile.path)
        if raw is not None:
            return succeed(raw)
        blob = self.contents.get(distfile.path)
        if blob is None:
            return fail(MetadataError(f"{distfile.path} is not stored"))
        try:
            return succeed(read_metadata(io.BytesIO(blob.data), distfile.kind, distfile.filename))
        except MetadataError as e:
            return fail(e)
