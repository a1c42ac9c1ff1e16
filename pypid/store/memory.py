"""
An in-memory L{IPackageStore}, for tests: files are bytes in a dict, never
on disk; its bodies serve those bytes, and stage, publish and remove work on
them. It keeps the directory store's rules (a new file goes over the listed
file of its name, the same bytes again are C{identical}, other bytes need
C{overwrite}; archives that are not complete are not listed), and both are
held to the same contract tests (C{tests/store/contract.py}).

Pure apart from Twisted's Deferreds: nothing here blocks on I/O.
"""

from __future__ import annotations

import hashlib
import io
import time
from typing import Callable, Iterable, NamedTuple, Optional, cast

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.web.server import Request
from zope.interface import implementer

from pypid.index.filenames import parse_filename
from pypid.index.model import DistFile, IndexSnapshot
from pypid.index.names import normalize
from pypid.index.yanks import changed_yanks
from pypid.store import complete
from pypid.store.interfaces import (
    AlreadyStored,
    BadName,
    IBody,
    IPackageStore,
    IStaged,
    NotListed,
    Placed,
    StoreFull,
    check_name,
    listed_as,
)
from pypid.store.metadata import CorruptArchive, MetadataError, parse_fields, read_metadata
from pypid.store.snapshot import SnapshotOwner

#: Bytes written to a request at a time when streaming.
CHUNK = 256 * 1024


class Blob(NamedTuple):
    """A stored file: its bytes and modification time."""

    data: bytes
    mtime_ns: int


def describe_bytes(path: str, data: bytes, mtime_ns: int, hash_algo: Optional[str],
                   has_sig: bool = False) -> DistFile | str:
    """
    The L{DistFile} the index lists for C{data} stored at C{path}, as a scan
    of the package directories would describe that file; or why it would
    not be listed (not a distribution name, not a complete archive).
    """
    filename = path[path.rfind("/") + 1:]
    parsed = parse_filename(filename)
    if parsed is None:
        return "not a distribution filename pypid can parse"
    reason = complete.check_tail(io.BytesIO(data), len(data), filename)
    if reason is not None:
        return reason
    name = requires_python = summary = metadata_sha256 = None
    if parsed.kind in ("wheel", "sdist"):
        try:
            raw: Optional[bytes] = read_metadata(io.BytesIO(data), parsed.kind, filename)
        except CorruptArchive as e:
            return f"corrupt or incomplete archive: {e}"
        except MetadataError:
            raw = None
        if raw is not None:
            fields = parse_fields(raw)
            if fields.name and normalize(fields.name) == parsed.project:
                name = fields.name
            requires_python = fields.requires_python
            summary = fields.summary
            if parsed.kind == "wheel":
                metadata_sha256 = hashlib.sha256(raw).hexdigest()
    check = complete.stream_check(filename)
    if check is not None:
        check.update(data)
        reason = check.result()
        if reason is not None:
            return reason
    digest = hashlib.new(hash_algo, data).hexdigest() if hash_algo else None
    return DistFile(
        path, 0, filename, parsed.project, name or parsed.name, parsed.version, parsed.kind,
        parsed.python_version, parsed.build, len(data), mtime_ns, digest, requires_python,
        metadata_sha256, summary, has_sig,
    )


@implementer(IPushProducer)
class _BytesSender:
    """Writes bytes into a request a chunk at a time, paused and resumed by its transport."""

    def __init__(self, request: Request, data: bytes) -> None:
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

    def read(self, offset: int, count: int) -> bytes | Deferred[bytes]:
        data = self._data[offset:offset + count] if self._data is not None else b""
        return succeed(data) if self._later else data

    def stream(self, request: Request, offset: int, count: int) -> None:
        data, self._data = self._data, None
        if data is None or len(data) < offset + count:
            request.loseConnection()
            return
        _BytesSender(request, data[offset:offset + count]).start()

    def close(self) -> None:
        self._data = None


@implementer(IStaged)
class MemoryStaged:
    """An L{IStaged} in memory (of C{store}: its C{room} bounds what may be written)."""

    def __init__(self, store: Optional["MemoryStore"] = None) -> None:
        self._store = store
        self._buffer: Optional[io.BytesIO] = io.BytesIO()
        self._data: Optional[bytes] = None
        self._digests: Optional[dict[str, str]] = None
        self.size = 0

    def write(self, data: bytes) -> None:
        if self._buffer is None:
            raise ValueError("write to a finished or aborted upload")
        store = self._store
        if store is not None and store.room is not None and self.size + len(data) > store.room - store._used():
            raise StoreFull("Insufficient Storage: the store is full.")
        self._buffer.write(data)
        self.size += len(data)

    def finish(self) -> dict[str, str]:
        if self._digests is None:
            if self._buffer is None:
                raise ValueError("finish of an aborted upload")
            data, self._buffer = self._buffer.getvalue(), None
            self._data = data
            self._digests = {
                "sha256": hashlib.sha256(data).hexdigest(),
                "blake2_256": hashlib.blake2b(data, digest_size=32).hexdigest(),
                "md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
            }
        return dict(self._digests)

    @property
    def data(self) -> bytes:
        """The bytes written (after L{finish})."""
        if self._data is None:
            raise ValueError("the upload is not finished, or was aborted")
        return self._data

    def reader(self) -> io.BytesIO:
        return io.BytesIO(self.data)

    def abort(self) -> None:
        self._buffer = None
        self._data = None


@implementer(IPackageStore)
class MemoryStore(SnapshotOwner):
    """
    An L{IPackageStore} over files held in memory.

    Files may be given as L{DistFile}s (listed at once, ready) with their
    bytes put in with L{put} (a file without bytes is listed but cannot be
    opened), and their core metadata in C{metadata} (else it is read from
    the bytes); or published like uploads.

    @param ready: False to start like a store whose first scan has not
        finished (L{make_ready} ends it).
    @param clock: the modification time of published files (C{seconds()});
        the system clock by default.
    @param later: bodies answer C{read} with a Deferred.
    @param room: bytes the store may hold (staged uploads, files and
        signatures), as a disk of that size would; L{None}: no limit.
    """

    def __init__(
        self,
        files: Iterable[DistFile] = (),
        hash_algo: Optional[str] = "sha256",
        ready: bool = True,
        clock: Optional[IReactorTime] = None,
        later: bool = False,
        room: Optional[int] = None,
    ) -> None:
        super().__init__(clock)
        self.room = room
        self.hash_algo = hash_algo
        self.snapshot = IndexSnapshot.build(files)
        self.changes.horizon = self.snapshot.serial
        self.ready = ready
        self._waiting: list[Deferred[None]] = []
        #: Stored bytes by path (a signature at C{<path>.asc}).
        self.contents: dict[str, Blob] = {}
        #: Core metadata by path, for files given without their bytes.
        self.metadata: dict[str, bytes] = {}
        #: Folders new files may be published into (besides those of stored files).
        self.folders: set[str] = set()
        self._now: Callable[[], int] = (
            time.time_ns if clock is None else (lambda: int(clock.seconds() * 1_000_000_000)))
        self._later = later

    def put(self, path: str, data: bytes, mtime_ns: Optional[int] = None) -> None:
        """Store C{data} at C{path} (a listed file's bytes, or a signature) without listing anything."""
        self.contents[path] = Blob(data, self._now() if mtime_ns is None else mtime_ns)

    def whenReady(self) -> Deferred[None]:
        if self.ready:
            return succeed(None)
        d: Deferred[None] = Deferred()
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

    def readMetadata(self, distfile: DistFile) -> Deferred[bytes]:
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

    def stage(self, size: Optional[int] = None) -> MemoryStaged:
        if size is not None and self.room is not None and size > self.room - self._used():
            raise StoreFull(f"Insufficient Storage: the upload is {size} bytes, and the store has "
                            f"{self.room - self._used()} free.")
        return MemoryStaged(self)

    def _used(self) -> int:
        return sum(len(blob.data) for blob in self.contents.values())

    def publish(self, name: str, staged: IStaged, overwrite: bool, signature: Optional[bytes] = None,
                uploader: Optional[str] = None) -> Deferred[Placed]:
        try:
            parts = check_name(name)
        except BadName:
            return fail()
        # A staged file from this store's stage() (the interface's contract).
        mine = cast(MemoryStaged, staged)
        return self.whenReady().addCallback(lambda _: self._publish(parts, mine, overwrite, signature))

    def _publish(self, parts: list[str], staged: MemoryStaged, overwrite: bool, signature: Optional[bytes]) -> Placed:
        staged.finish()
        data = staged.data
        filename = parts[-1]
        listed = self._listed(filename)
        path = listed.path if listed is not None else "/".join(parts)
        if listed is None and len(parts) > 1 and not self._folder("/".join(parts[:-1])):
            raise BadName(f"no folder {'/'.join(parts[:-1])!r} in the store")
        old = self.contents.get(path)
        if old is not None and old.data == data:
            return Placed("identical", path)
        if old is not None and not overwrite:
            raise AlreadyStored(filename, path[path.rfind("/") + 1:])
        now = self._now()
        has_sig = signature is not None or (old is not None and path + ".asc" in self.contents)
        described = describe_bytes(path, data, now, self.hash_algo, has_sig)
        if isinstance(described, str):
            # What the index would not list is not stored.
            raise NotListed(described)
        if self.room is not None:
            size = len(data) + (len(signature) if signature is not None else 0)
            if size > self.room - self._used() + (len(old.data) if old is not None else 0):
                raise StoreFull("Insufficient Storage: the store is full.")
        self.contents[path] = Blob(data, now)
        if signature is not None:
            self.contents[path + ".asc"] = Blob(signature, now)
        self.apply([described], [])
        return Placed("created" if old is None else "replaced", path)

    def _listed(self, filename: str) -> Optional[DistFile]:
        """The listed file that C{filename} would be (the same release file, L{release_key})."""
        return listed_as(self.snapshot, filename)

    def _folder(self, folder: str) -> bool:
        prefix = folder + "/"
        return folder in self.folders or any(path.startswith(prefix) for path in self.contents)

    def remove(self, distfiles: Iterable[DistFile]) -> Deferred[list[str]]:
        distfiles = list(distfiles)
        deleted = []
        for f in distfiles:
            if self.contents.pop(f.path, None) is not None:
                deleted.append(f.path)
            self.contents.pop(f.path + ".asc", None)
        self.apply([], [f.path for f in distfiles])
        self.apply_yanks(self.forget_yanks(distfiles))
        return succeed(deleted)

    def setYanked(self, distfiles: Iterable[DistFile], reason: Optional[str]) -> Deferred[list[str]]:
        """Yanks live in the snapshot alone: nothing to make durable."""
        files = [(f.project, f.filename) for f in distfiles]

        def ready(_: None) -> list[str]:
            changes, changed = changed_yanks(self.snapshot.yanks, files, reason)
            self.apply_yanks(changes)
            return changed

        return self.whenReady().addCallback(ready)
