"""
Upstream files shared by replicas: a file one replica fetched from the
upstream index (C{--fallback-url}, cache mode) is kept in the object store,
so that the other replicas take it from there instead of fetching it
again (L{pypid.upstream.fallback.Fallback}'s C{shared}).

Shared files are content-addressed by the digest the upstream's page gives
(C{upstream/<algorithm>/<digest[:2]>/<digest>/<filename>} below the
store's prefix), and a replica checks what it reads against that digest,
as it checks the upstream's own bytes: no catalog row is needed to find
one or to trust it, and an object is stored whole or not at all. Files the
upstream lists without a digest are not shared. Each replica still keeps
its own least-recently-used cache on disk, in front of the store.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from pypid.upstream.fallback import _check_hash

if TYPE_CHECKING:
    from pypid.store.directory.landing import Spool
    from pypid.upstream.client import Download

#: Where shared upstream files go below the store's prefix (fsck leaves them alone).
UPSTREAM = "upstream/"

_T = TypeVar("_T")
#: An upstream file's digests, (algorithm, hex) pairs: L{pypid.upstream.records.Hashes}, named
#: here rather than imported from a higher layer.
_Hashes = tuple[tuple[str, str], ...]


def shared_key(url: str, hashes: _Hashes) -> Optional[str]:
    """The object key of an upstream file, or L{None} when the upstream gives no digest to name it by."""
    check = _check_hash(hashes)
    if check is None:
        return None
    algorithm, digest = check
    filename = url.rstrip("/").rsplit("/", 1)[-1] or "file"
    return f"{UPSTREAM}{algorithm}/{digest[:2]}/{digest}/{filename}"


class _Writer:
    """The consumer a shared object is delivered into: the fallback's C{write}."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self.write_chunk = write
        self.length = 0
        self.producer: Optional[object] = None

    def registerProducer(self, producer: object, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.length += len(data)
        self.write_chunk(data)


class SharedUpstreamFiles:
    """The fallback's C{shared}: upstream files in the object store of an L{ObjectStore}."""

    log = Logger()

    def __init__(self, store: Any) -> None:
        self.store = store
        #: Files taken from the store, and files put there (for tests and logs).
        self.taken = 0
        self.kept = 0

    def download(self, url: str, hashes: _Hashes, write: Callable[[bytes], None]) -> Deferred[Optional[Download]]:
        """
        Deliver the shared copy of C{url} into C{write}: fires with a
        L{pypid.upstream.client.Download}, or L{None} when the store has
        none (or cannot be reached: the upstream is asked instead).
        """
        from pypid.store.objectstore.s3 import ObjectNotFound, S3Error, TransferInterrupted
        from pypid.upstream.client import Download, DownloadError

        key = shared_key(url, hashes)
        if key is None or self.store.s3 is None:
            return succeed(None)
        writer = _Writer(write)
        d: Deferred[Any] = self.store.s3.open(key)

        def opened(body: Any) -> Deferred[Download]:
            delivered: Deferred[int] = body.deliver(writer)
            return delivered.addCallback(lambda length: Download(length, True))

        def failed(failure: Failure) -> Optional[Download]:
            if failure.check(TransferInterrupted) or writer.length:
                raise DownloadError(f"the shared copy of {url} was cut short: {failure.getErrorMessage()}")
            if failure.check(ObjectNotFound):
                return None
            if failure.check(S3Error):
                self.log.warn("shared upstream files unavailable ({why}); asking the upstream",
                              why=failure.getErrorMessage())
                return None
            failure.raiseException()

        def taken(download: Optional[Download]) -> Optional[Download]:
            if download is not None:
                self.taken += 1
                self.log.info("took {url} from the shared upstream files", url=url)
            return download

        return d.addCallback(opened).addErrback(failed).addCallback(taken)

    def keep(self, url: str, hashes: _Hashes, path: str) -> Deferred[None]:
        """
        Put the file just fetched (and checked) at C{path} in the store for
        the other replicas. In the background: a failure is logged, nothing
        else. The file is linked aside first, as the cache may evict it.
        """
        from pypid.store.objectstore.s3 import S3Error

        key = shared_key(url, hashes)
        if key is None or self.store.s3 is None:
            return succeed(None)
        try:
            aside = self._aside(path)
        except OSError as e:
            self.log.warn("cannot share {url}: {why}", url=url, why=e)
            return succeed(None)
        d: Deferred[str] = self.store.s3.put_file(key, aside)

        def kept(_: Any) -> None:
            self.kept += 1

        def failed(failure: Failure) -> None:
            failure.trap(S3Error)
            self.log.warn("cannot share {url} with the other replicas: {why}", url=url,
                          why=failure.getErrorMessage())

        def cleanup(result: _T) -> _T:
            try:
                os.unlink(aside)
            except OSError:
                pass
            self.store.spool.release()
            return result

        return d.addCallbacks(kept, failed).addBoth(cleanup)

    def _aside(self, path: str) -> str:
        """
        A link to (or copy of) C{path} in the store's upload spool, which
        is there while it is (the caller releases the spool once the link
        is gone).
        """
        spool: Spool = self.store.spool
        fd, aside = spool.create()
        try:
            os.close(fd)
            os.unlink(aside)
            try:
                os.link(path, aside)
            except OSError:
                import shutil

                shutil.copyfile(path, aside)
        except BaseException:
            try:
                os.unlink(aside)
            except OSError:
                pass
            spool.release()
            raise
        return aside
