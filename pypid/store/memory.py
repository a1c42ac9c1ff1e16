"""An in-memory L{IPackageStore}, for tests."""

from __future__ import annotations

from typing import Iterable, Optional

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from pypid.index.model import DistFile, IndexSnapshot
from pypid.store.directory.store import open_regular
from pypid.store.interfaces import IPackageStore
from pypid.store.metadata import MetadataError
from pypid.store.snapshot import SnapshotOwner


@implementer(IPackageStore)
class MemoryStore(SnapshotOwner):
    """
    An L{IPackageStore} over files held in memory, for tests of the web
    layer. C{contents} maps a file's path to its bytes; C{metadata} maps it
    to its core metadata bytes.
    """

    def __init__(self, files: Iterable[DistFile] = (), hash_algo: Optional[str] = "sha256") -> None:
        super().__init__()
        self.hash_algo = hash_algo
        self.snapshot = IndexSnapshot.build(files)
        self.ready = True
        self._waiting: list[Deferred] = []
        self.metadata: dict[str, bytes] = {}
        self.paths: dict[str, str] = {}
        self.rescans = 0
        self.refreshed: list[str] = []

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

    def rescan(self) -> Deferred:
        self.rescans += 1
        return succeed(None)

    def refresh(self, abspaths) -> Deferred:
        self.refreshed.extend(abspaths)
        return succeed(None)

    def localPath(self, distfile: DistFile) -> Optional[str]:
        return self.paths.get(distfile.path)

    def openFile(self, distfile: DistFile, suffix: str = ""):
        path = self.paths.get(distfile.path)
        return None if path is None else open_regular(path + suffix)

    def readMetadata(self, distfile: DistFile) -> Deferred:
        raw = self.metadata.get(distfile.path)
        if raw is None:
            return fail(MetadataError("no metadata"))
        return succeed(raw)
