"""
The object store backend: files in an S3-compatible object store, the
listing in a PostgreSQL catalog that every replica shares
(L{pypid.store.objectstore.catalog}). Any number of pypid processes built
on one bucket and one catalog serve the same index, and each takes uploads.

Where things are (keys relative to C{--store s3://BUCKET/PREFIX}):

    files/<sha256[:2]>/<sha256>/<filename>           a file's bytes
    files/<sha256[:2]>/<sha256>/<filename>.asc       its detached signature
    files/<sha256[:2]>/<sha256>/<filename>.metadata  its core metadata

The keys are content-addressed: two replicas taking different bytes under
one filename at once never write the same key, so the one the catalog
refuses cannot overwrite the winner's object; it removes its own.

A write: the objects first (signature and metadata, then the file, each
whole or not at all, as S3 stores them), then the catalog row (one
transaction, whose unique indexes arbitrate), then the NOTIFY that tells
every replica; L{ObjectStore.publish} fires once this replica has applied
the change. A crash between the objects and the row leaves an object no
row names, which C{pypid store fsck} finds; a listed row never names an
incomplete object.

Reads: the snapshot is built from the catalog at start and kept up to date
by its changes (L{pypid.store.objectstore.catalog.ChangeFollower}); the
bucket is never listed. Downloads stream from the store with flow control
(L{ObjectBody}), or are sent there by a presigned URL (C{--s3-redirect}).
Core metadata comes from its object (or, failing that, the catalog), so
that a replica keeps serving installs while the catalog is away.

Everything here runs on the reactor thread; blocking steps (hashing,
reading archives) go through C{threads}.
"""

from __future__ import annotations

import gc
import hashlib
import os
from typing import Any, Callable, Generator, Iterable, NamedTuple, Optional, TypeVar

from twisted.internet import defer
from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pypid.index.changes import ChangesSince
from pypid.index.filenames import parse_filename
from pypid.index.model import DistFile, IndexSnapshot
from pypid.index.names import normalize
from pypid.lru import Recent
from pypid.store import complete
from pypid.store.directory import landing
from pypid.store.directory.serials import MAX_ANSWER
from pypid.store.interfaces import (
    AlreadyStored,
    BadName,
    IBody,
    IPackageStore,
    IStaged,
    IStoreHealth,
    NotListed,
    Placed,
    StoreUnavailable,
    check_name,
    listed_as,
)
from pypid.store.metadata import (
    MAX_METADATA_SIZE,
    CorruptArchive,
    MetadataError,
    MetadataTooLarge,
    parse_fields,
    read_metadata,
)
from pypid.store.snapshot import SnapshotOwner
from pypid.threads import Threads

_T = TypeVar("_T")

#: Where files go below the store's prefix.
FILES = "files/"
#: Bytes of core metadata files kept in memory (as the directory store does).
METADATA_CACHE_BYTES = 16 * 1024 * 1024
#: Presigned URLs kept for reuse (C{--s3-redirect}): signing one costs more
#: than the rest of the answer. One is reused for a fifth of its lifetime,
#: so a client always gets at least four fifths of it.
PRESIGNED_KEPT = 8192
#: How long a publish waits for its own change to come back from the catalog
#: before it applies it itself.
APPLY_WAIT = 10.0
#: How long a change log answer waits for this replica to catch up to a
#: serial another one showed already (else: a full sync).
CHANGELOG_WAIT = 2.0

_new_tuple = tuple.__new__


def _raw(hexdigest: Optional[str]) -> Optional[bytes]:
    """A digest as L{DistFile} keeps it: bytes, not hex."""
    return None if hexdigest is None else bytes.fromhex(hexdigest)


def object_key(sha256: str, filename: str) -> str:
    """The content-addressed key of a file's bytes, relative to the store's prefix."""
    return f"{FILES}{sha256[:2]}/{sha256}/{filename}"


def content_type(filename: str) -> str:
    lower = filename.lower()
    if lower.endswith((".tar.gz", ".tgz")):
        return "application/gzip"
    if lower.endswith((".zip", ".whl", ".egg")):
        return "application/zip"
    if lower.endswith((".asc", ".metadata")):
        return "text/plain; charset=utf-8"
    return "application/octet-stream"


class Described(NamedTuple):
    """What the index lists of a new file's bytes, and its core metadata."""

    project: str
    name: str
    version: str
    requires_python: Optional[str]
    summary: Optional[str]
    #: The core metadata file's bytes (L{None}: none, or too large to offer).
    metadata: Optional[bytes]
    metadata_sha256: Optional[str]


def describe_file(path: str, filename: str) -> Described | str:
    """
    Read a staged file as the index would list it: a L{Described}, or why it
    cannot be listed (not a distribution name, not a complete archive, a
    corrupt one). Blocking: in a thread.
    """
    parsed = parse_filename(filename)
    if parsed is None:
        return "not a distribution filename pypid can parse"
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        reason = complete.check(f, size, filename)
    if reason is not None:
        return reason
    name = requires_python = summary = metadata_sha256 = None
    raw: Optional[bytes] = None
    if parsed.kind in ("wheel", "sdist"):
        try:
            raw = read_metadata(path, parsed.kind, filename)
        except CorruptArchive as e:
            return f"corrupt or incomplete archive: {e}"
        except (MetadataTooLarge, MetadataError):
            raw = None
        if raw is not None:
            fields = parse_fields(raw)
            if fields.name and normalize(fields.name) == parsed.project:
                name = fields.name
            requires_python = fields.requires_python
            summary = fields.summary
            metadata_sha256 = hashlib.sha256(raw).hexdigest()
    return Described(parsed.project, name or parsed.name, str(parsed.version), requires_python, summary, raw,
                     metadata_sha256)


class Listing(NamedTuple):
    """The L{DistFile}s of catalog rows, and what the store keeps beside them."""

    files: list[DistFile]
    #: Signature sizes by path, for files with one.
    signatures: dict[str, int]
    #: Object keys that are not where L{object_key} says, by path.
    keys: dict[str, str]
    #: The yanked files, by project key: file name -> reason (C{""} for none).
    yanks: dict[str, dict[str, str]]


def distfiles_of(records: Iterable[Any], shared: Optional[dict[object, object]] = None) -> Listing:
    """
    The L{DistFile}s the index lists for catalog rows (L{FileRecord}s); rows
    whose filename pypid cannot parse are left out. Pure (no I/O); strings
    that rows share are shared (C{shared}, a dict of each to itself).
    """
    share = (shared if shared is not None else {}).setdefault
    files: list[DistFile] = []
    signatures: dict[str, int] = {}
    keys: dict[str, str] = {}
    yanks: dict[str, dict[str, str]] = {}
    for record in records:
        filename = record.filename
        parsed = parse_filename(filename)
        if parsed is None:
            continue
        project, name, version, kind, python_version, build = parsed
        display = record.project_name or name
        if normalize(display) != project:
            display = name
        # Times are kept to the microsecond by PostgreSQL.
        mtime_ns = round(record.uploaded_at * 1_000_000) * 1000
        files.append(_new_tuple(DistFile, (
            filename, 0, share(project, project), share(display, display), version, kind,
            share(python_version, python_version), build, record.size, mtime_ns, _raw(record.sha256),
            share(record.requires_python, record.requires_python),
            _raw(record.core_metadata_sha256) if kind == "wheel" else None,
            share(record.summary, record.summary), bool(record.has_signature), 0, 0,
        )))
        if record.has_signature and record.signature_size is not None:
            signatures[filename] = record.signature_size
        if record.object_key != object_key(record.sha256, filename):
            keys[filename] = record.object_key
        if record.yanked:
            yanks.setdefault(project, {})[filename] = record.yanked_reason or ""
    return Listing(files, signatures, keys, yanks)


def _catalog_errors() -> tuple[type[Exception], ...]:
    from pypid.store.objectstore.catalog import CatalogUnavailable

    return (CatalogUnavailable,)


@implementer(IPackageStore, IStoreHealth)
class ObjectStore(SnapshotOwner):
    """
    An L{IPackageStore} over an S3 client (L{pypid.store.objectstore.s3.S3Client})
    and a catalog (L{pypid.store.objectstore.catalog.Catalog}).

    @param work_dir: a local directory for uploads on their way in (they
        are staged, hashed and checked there before they go to the store).
    @param redirect: answer downloads with a presigned URL of the object
        (C{--s3-redirect}) for C{presign_seconds}.
    """

    log = Logger()
    hash_algo = "sha256"

    def __init__(self, s3: Any, catalog: Any, threads: Threads, work_dir: str, clock: IReactorTime,
                 redirect: bool = False, presign_seconds: int = 300) -> None:
        super().__init__()
        self.s3 = s3
        self.catalog = catalog
        self.work_dir = work_dir
        #: Where uploads are staged (there only while one is).
        self.spool = landing.Spool(work_dir)
        self.redirect = redirect
        self.presign_seconds = presign_seconds
        self._threads = threads
        self._clock: IReactorTime = clock
        self._ready: Optional[list[Deferred[None]]] = []
        self._follower: Any = None
        self._signatures: dict[str, int] = {}
        self._keys: dict[str, str] = {}
        self._metadata: Recent[str, bytes] = Recent(None, max_bytes=METADATA_CACHE_BYTES)
        #: Presigned URLs by key, with when they were made.
        self._presigned: Recent[str, tuple[float, str]] = Recent(PRESIGNED_KEPT)
        #: The object store's last failure (a line), until a request succeeds again.
        self._s3_problem: Optional[str] = None
        self._stopped = False

    # Life

    def start(self) -> Deferred[None]:
        """
        Check the catalog's schema, build the snapshot from the catalog
        alone, and follow its changes from there. Fires once ready.
        """
        return defer.ensureDeferred(self._start())

    async def _start(self) -> None:
        import time

        from pypid.store.objectstore.catalog import CatalogUnavailable

        began = time.monotonic()
        delay = 0.5
        while True:
            try:
                await self.catalog.start()
                # Rows become what the index lists as they arrive, in the catalog's thread.
                snapshot = await self.catalog.snapshot(distfiles_of)
                break
            except CatalogUnavailable as e:
                # Not ready until it is back: requests wait, /health says starting.
                self.log.warn("cannot load the index from the catalog ({why}); trying again in {delay} s",
                              why=e, delay=delay)
                await deferLater(self._clock, delay, lambda: None)
                delay = min(delay * 2, 10.0)
                if self._stopped:
                    return
        serial, listing, projects = snapshot.serial, snapshot.files, snapshot.projects
        del snapshot
        self._signatures, self._keys = listing.signatures, listing.keys
        self._load(listing, serial, projects)
        count = len(listing.files)
        del listing
        if self._stopped:
            return
        self._follower = self.catalog.follow(serial, self._changes)
        ready, self._ready = self._ready, None
        self.log.info(
            "index ready from the catalog {where} at serial {serial}: {projects} projects, {files} files"
            " ({seconds:.2f} s)", where=self.catalog.where, serial=serial,
            projects=len(self.snapshot.projects), files=count, seconds=time.monotonic() - began)
        gc.freeze()
        for d in ready or ():
            d.callback(None)

    def _load(self, listing: Listing, serial: int, projects: dict[str, int]) -> None:
        """
        The first snapshot: the catalog's files and yanks as of C{serial},
        each project at the serial of its last change (C{projects}), as
        every replica numbers them.
        """
        snapshot, changed = self.snapshot.apply(listing.files, [], serial)
        snapshot, yanked = snapshot.with_yanks(listing.yanks, numbered=False)
        snapshot = snapshot.with_serials(projects, serial)
        self._install(snapshot, changed | yanked)

    def stop(self) -> Deferred[object]:
        """Stop following the catalog, and let the connections go."""
        self._stopped = True
        if self._follower is not None:
            self._follower.stop()
        d: Deferred[object] = self.catalog.stop() if self.catalog._pool.started else succeed(None)
        return d.addBoth(lambda _: self.s3.close() if self.s3 is not None else None)

    # IPackageStore

    @property
    def ready(self) -> bool:
        return self._ready is None

    def whenReady(self) -> Deferred[None]:
        if self._ready is None:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._ready.append(d)
        return d

    def key_of(self, distfile: DistFile) -> str:
        """The object key of a listed file's bytes."""
        key = self._keys.get(distfile.path)
        # The object store's files always have their sha256 digest (hash_algo).
        return key if key is not None else object_key(distfile.digest or "", distfile.filename)

    def open(self, distfile: DistFile, sidecar: str = "") -> Optional["ObjectBody"]:
        # Only what the snapshot lists now (its key comes from its digest).
        if self.snapshot.files.get(distfile.path) != distfile:
            return None
        size: Optional[int]
        if sidecar == "":
            size = distfile.size
        elif sidecar == ".asc" and distfile.has_sig:
            size = self._signatures.get(distfile.path)
            if size is None:
                return None
        else:
            return None
        key = self.key_of(distfile) + sidecar
        return ObjectBody(self, key, size, distfile.mtime_ns, self._presign(key) if self.redirect else None)

    def _presign(self, key: str) -> str:
        now = self._clock.seconds()
        kept = self._presigned.get(key)
        if kept is not None and now - kept[0] < self.presign_seconds / 5:
            return kept[1]
        url: str = self.s3.presign_get(key, self.presign_seconds)
        self._presigned[key] = (now, url)
        return url

    def readMetadata(self, distfile: DistFile) -> Deferred[bytes]:
        if self.snapshot.files.get(distfile.path) != distfile:
            return fail(MetadataError(f"{distfile.path} is not stored"))
        key = self.key_of(distfile)
        cached = self._metadata.get(key)
        if cached is not None:
            return succeed(cached)

        def keep(raw: bytes) -> bytes:
            self._metadata[key] = raw
            return raw

        return self._read_metadata(distfile, key).addCallback(keep)

    @inlineCallbacks
    def _read_metadata(self, distfile: DistFile, key: str) -> Generator[Deferred[Any], Any, bytes]:
        from pypid.store.objectstore.s3 import ObjectNotFound, S3Error

        try:
            data: bytes = yield self.read_object(key + ".metadata", MAX_METADATA_SIZE)
            return data
        except ObjectNotFound:
            pass
        except S3Error as e:
            raise StoreUnavailable(self.s3_failed(e)) from None
        # Not in the store (too large to offer, or no metadata): the catalog may have it.
        try:
            raw: Optional[bytes] = yield self.catalog.core_metadata(distfile.filename)
        except _catalog_errors() as e:
            raise StoreUnavailable(f"the catalog is unavailable: {e}") from None
        if raw is None:
            raise MetadataError(f"{distfile.filename} has no core metadata")
        return raw

    def read_object(self, key: str, limit: int) -> Deferred[bytes]:
        """The whole of a small object (at most C{limit} bytes), or L{S3Error}."""
        d: Deferred[Any] = self.s3.open(key)

        def opened(body: Any) -> Any:
            if body.length is not None and body.length > limit:
                body.discard()
                raise MetadataError(f"{key} is over {limit} bytes")
            collect = _Collect(limit)
            return body.deliver(collect).addCallback(lambda _: b"".join(collect.chunks))

        return d.addCallback(opened).addCallback(self._s3_ok)

    def read_object_range(self, key: str, offset: int, count: int) -> Deferred[bytes]:
        """Bytes C{offset} to C{offset + count} of an object, or L{S3Error}."""
        d: Deferred[Any] = self.s3.open(key, (offset, offset + count - 1))

        def opened(body: Any) -> Any:
            collect = _Collect(count)
            return body.deliver(collect).addCallback(lambda _: b"".join(collect.chunks))

        return d.addCallback(opened).addCallback(self._s3_ok)

    def stage(self, size: Optional[int] = None) -> IStaged:
        return landing.Staged(self.spool, size)

    def publish(self, name: str, staged: IStaged, overwrite: bool, signature: Optional[bytes] = None,
                uploader: Optional[str] = None) -> Deferred[Placed]:
        try:
            parts = check_name(name)
        except BadName:
            return fail()
        if len(parts) > 1:
            return fail(BadName(f"{name!r}: the object store keeps no folders, only file names"))
        return self.whenReady().addCallback(
            lambda _: defer.ensureDeferred(self._publish(parts[0], staged, overwrite, signature, uploader)))

    async def _publish(self, filename: str, staged: Any, overwrite: bool, signature: Optional[bytes],
                       uploader: Optional[str]) -> Placed:
        from pypid.store.objectstore.catalog import FileExists, FileRecord

        digests = await self._threads(staged.finish)
        sha256 = digests["sha256"]
        # A listed file of this release identity, however its name is
        # spelled, is this file: the same bytes are identical, other bytes
        # conflict, an overwrite replaces it under its listed name.
        listed = listed_as(self.snapshot, filename)
        if listed is not None:
            if listed.digest == sha256:
                return Placed("identical", listed.path)
            if not overwrite:
                raise AlreadyStored(filename, listed.filename)
            filename = listed.filename
        self._refuse_writes_while_down()
        described = await self._threads(describe_file, staged.path, filename)
        if isinstance(described, str):
            # What the index would not list is not stored: what publish accepts is listed.
            raise NotListed(described)
        key = object_key(sha256, filename)
        await self._put_objects(key, staged, filename, digests, described.metadata, signature)
        record = FileRecord(
            project=described.project, project_name=described.name, version=described.version,
            filename=filename, object_key=key, size=staged.size, sha256=sha256,
            uploaded_at=self._clock.seconds(), md5=digests["md5"], uploader=uploader,
            requires_python=described.requires_python,
            summary=described.summary, core_metadata_sha256=described.metadata_sha256,
            has_signature=signature is not None, signature_size=len(signature) if signature is not None else None,
        )
        try:
            published = await self.catalog.publish(record, described.metadata, actor=uploader,
                                                   replace_existing=overwrite)
        except FileExists as e:
            existing = e.existing
            if existing.object_key == key:
                # Another replica stored these very bytes under this name first.
                await self._caught_up(existing.serial)
                return Placed("identical", existing.filename)
            # Another replica listed this release file first (the catalog's
            # unique indexes decided): what it holds decides the answer.
            await self._delete_objects(key)
            if existing.sha256 == sha256:
                await self._caught_up(existing.serial)
                return Placed("identical", existing.filename)
            raise AlreadyStored(filename, existing.filename) from None
        except _catalog_errors() as e:
            await self._delete_objects(key)
            raise StoreUnavailable(f"the catalog is unavailable ({e}); the upload was not stored") from None
        except BaseException:
            await self._delete_objects(key)
            raise
        for old in published.replaced:
            if old.object_key != key:
                await self._delete_objects(old.object_key)
        await self._caught_up(published.serial, published.record)
        return Placed("replaced" if published.replaced else "created", filename)

    def _refuse_writes_while_down(self) -> None:
        health = self.catalog.health
        if not health.ok:
            raise StoreUnavailable(f"the catalog is unavailable ({health.reason}); uploads are refused until it is back")

    async def _put_objects(self, key: str, staged: Any, filename: str, digests: dict[str, str], metadata: Optional[bytes],
                           signature: Optional[bytes]) -> None:
        from pypid.store.objectstore.s3 import S3Error

        try:
            if metadata is not None:
                await self.s3.put_bytes(key + ".metadata", metadata, content_type(".metadata"))
            if signature is not None:
                await self.s3.put_bytes(key + ".asc", signature, content_type(".asc"))
            await self.s3.put_file(key, staged.path, size=staged.size, sha256=digests["sha256"], md5=digests["md5"],
                                   content_type=content_type(filename))
        except S3Error as e:
            line = self.s3_failed(e)
            await self._delete_objects(key)
            raise StoreUnavailable(f"{line}; the upload was not stored") from None
        self._s3_ok(None)

    async def _delete_objects(self, key: str) -> None:
        """Remove a file's objects (best effort: what stays is an orphan, which fsck finds)."""
        from pypid.store.objectstore.s3 import S3Error

        for suffix in (".metadata", ".asc", ""):
            try:
                await self.s3.delete(key + suffix)
            except S3Error as e:
                self.log.warn("could not remove {key} from the object store ({why}): "
                              "'pypid store fsck --fix' removes it", key=key + suffix, why=e)
                return

    async def _caught_up(self, serial: Optional[int], record: Any = None) -> None:
        """Wait until this replica has applied the change C{serial}; apply C{record} itself if that takes long."""
        follower = self._follower
        # (Rows read from the catalog always have their serial.)
        if follower is None or serial is None or follower.serial >= serial:
            return
        d = follower.wait_for(serial)
        timeout = self._clock.callLater(APPLY_WAIT, d.cancel)
        try:
            await d
        except defer.CancelledError:
            if record is not None:
                listing = distfiles_of([record])
                self._signatures.update(listing.signatures)
                self._keys.update(listing.keys)
                self.apply(listing.files, [], serial)
        finally:
            if timeout.active():
                timeout.cancel()

    def remove(self, distfiles: Iterable[DistFile]) -> Deferred[list[str]]:
        return defer.ensureDeferred(self._remove(list(distfiles)))

    async def _remove(self, distfiles: list[DistFile]) -> list[str]:
        self._refuse_writes_while_down()
        deleted: list[str] = []
        last = 0
        for f in distfiles:
            try:
                removed = await self.catalog.remove(f.filename)
            except _catalog_errors() as e:
                raise StoreUnavailable(f"the catalog is unavailable ({e}); nothing more was removed") from None
            if removed is None:
                continue
            deleted.append(f.path)
            last = removed.serial
            await self._delete_objects(removed.record.object_key)
        if last:
            await self._caught_up(last)
        # Rows another replica removed already: gone here too once caught up.
        return deleted

    def setYanked(self, distfiles: Iterable[DistFile], reason: Optional[str]) -> Deferred[list[str]]:
        files = list(distfiles)
        return self.whenReady().addCallback(lambda _: defer.ensureDeferred(self._set_yanked(files, reason)))

    async def _set_yanked(self, files: list[DistFile], reason: Optional[str]) -> list[str]:
        # In the file rows (yanked, yanked_reason), one numbered change per
        # file whose yank changed, NOTIFYed like any other: every replica
        # shows it within its usual propagation time.
        self._refuse_writes_while_down()
        try:
            done = await self.catalog.set_yanked([f.filename for f in files], reason)
        except _catalog_errors() as e:
            raise StoreUnavailable(f"the catalog is unavailable ({e}); no yank was changed") from None
        if done is None:
            return []
        follower = self._follower
        if follower is not None and follower.serial < done.serial:
            d = follower.wait_for(done.serial)
            timeout = self._clock.callLater(APPLY_WAIT, d.cancel)
            try:
                await d
            except defer.CancelledError:
                self._changes(list(done.changes))
            finally:
                if timeout.active():
                    timeout.cancel()
        return [record.filename for record in done.records]

    def changelog(self, since: int) -> Deferred[ChangesSince]:
        return defer.ensureDeferred(self._changelog(since))

    async def _changelog(self, since: int) -> ChangesSince:
        # From the catalog's change table: every replica gives the same
        # serials for the same changes, up to the serial it shows.
        await self.whenReady()
        for attempt in (1, 2):
            upto = self.snapshot.serial
            try:
                last, log, more = await self.catalog.changelog(since, upto, MAX_ANSWER)
            except _catalog_errors() as e:
                raise StoreUnavailable(f"the catalog is unavailable ({e})") from None
            follower = self._follower
            if not (attempt == 1 and upto < since <= last and follower is not None):
                break
            # Another replica showed a serial this one has yet to apply: catch up (briefly) first.
            d = follower.wait_for(since)
            timeout = self._clock.callLater(CHANGELOG_WAIT, d.cancel)
            try:
                await d
            except defer.CancelledError:
                break
            finally:
                if timeout.active():
                    timeout.cancel()
        return ChangesSince(tuple(log), 0 <= since <= upto and not more)

    # Following the catalog

    def _log(self, old: IndexSnapshot, new: IndexSnapshot, changed: frozenset[str]) -> None:
        """The catalog keeps the change log (L{changelog}): none in memory."""

    def _changes(self, changes: list[Any]) -> None:
        """
        Apply changes read from the catalog, in serial order (on the reactor
        thread): the files and yanks as their rows say, each project touched
        at the serial of its last change (as every replica numbers it), the
        snapshot at the last change's.
        """
        state: dict[str, Any] = {}
        serials: dict[str, int] = {}
        for change in changes:
            serials[change.project] = change.serial
            if change.action == "remove":
                state[change.filename] = None
            elif change.file is not None:
                state[change.filename] = change.file
        added = [record for record in state.values() if record is not None]
        removed = [filename for filename, record in state.items() if record is None]
        listing = distfiles_of(added)
        for filename in removed:
            self._signatures.pop(filename, None)
            self._keys.pop(filename, None)
        for record in added:
            self._signatures.pop(record.filename, None)
            self._keys.pop(record.filename, None)
        self._signatures.update(listing.signatures)
        self._keys.update(listing.keys)
        last = changes[-1].serial
        old = self.snapshot
        new, changed = old.apply(listing.files, removed, last)
        # A yank is as the file's row says now; a removed file's yank goes with it.
        yanks: dict[str, dict[str, str]] = {}
        for filename, record in state.items():
            parsed = parse_filename(filename)
            if parsed is None:
                continue
            current = yanks.get(parsed.project)
            if current is None:
                current = yanks[parsed.project] = dict(new.yanked(parsed.project))
            if record is not None and record.yanked:
                current[filename] = record.yanked_reason or ""
            else:
                current.pop(filename, None)
        new, yanked = new.with_yanks(yanks, numbered=False)
        numbers = {}
        for key, serial in serials.items():
            project, before = new.projects.get(key), old.projects.get(key)
            number = max(serial, before.serial) if before is not None else serial
            if project is not None and project.serial != number:
                numbers[key] = number
        if numbers or new.serial < last:
            new = new.with_serials(numbers, last)
        if new is not old:
            self._install(new, changed | yanked | frozenset(numbers))

    # Health

    def problems(self) -> list[str]:
        found = []
        health = self.catalog.health
        if not health.ok and self.ready:
            found.append(f"catalog: {health.reason}")
        if self._s3_problem is not None:
            found.append(f"object store: {self._s3_problem}")
        return found

    def s3_failed(self, error: BaseException) -> str:
        """Note the object store's failure (one line) and return what to say of it."""
        from pypid.store.objectstore.s3 import ObjectNotFound

        line = str(error)
        if not isinstance(error, ObjectNotFound):
            if self._s3_problem is None:
                self.log.warn("object store unavailable: {why}", why=line)
            self._s3_problem = line
        return f"the object store is unavailable: {line}"

    def _s3_ok(self, result: _T) -> _T:
        if self._s3_problem is not None:
            self.log.info("object store available again")
            self._s3_problem = None
        return result


class CatalogOwners:
    """
    The first uploaders of the ACL (C{unlisted-projects = first-uploader})
    kept in the catalog, so that every replica gives the same answer and
    one of two replicas claiming a project at once wins. Its methods block:
    the ACL calls them in a thread (they wait for the catalog's own).
    """

    def __init__(self, catalog: Any, reactor: Any) -> None:
        self.catalog = catalog
        self.reactor = reactor

    def _call(self, f: Callable[..., Any], *args: Any) -> Any:
        from twisted.internet.threads import blockingCallFromThread

        try:
            return blockingCallFromThread(self.reactor, f, *args)
        except _catalog_errors() as e:
            raise StoreUnavailable(f"the catalog is unavailable ({e})") from None

    def owner(self, project: str) -> Optional[str]:
        owner: Optional[str] = self._call(self.catalog.owner, project)
        return owner

    def claim(self, project: str, user: str) -> str:
        owner: str = self._call(self.catalog.claim_owner, project, user)
        return owner


class _Collect:
    """A consumer keeping what it is written, up to C{limit} bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: list[bytes] = []
        self.size = 0
        self.producer: Any = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            if self.producer is not None:
                self.producer.stopProducing()
            return
        self.chunks.append(data)


class _ToRequest:
    """
    The consumer an object's body is delivered into: the request, through
    which the HTTP connection's flow control pauses the store's connection.
    Remembers the producer (to stop it when the client leaves) and whether
    anything was written (before that, a failure can still be answered).
    """

    def __init__(self, request: Any) -> None:
        self.request = request
        self.producer: Any = None
        self.written = 0

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer
        self.request.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        if self.producer is not None:
            self.producer = None
            # (A request whose client has gone has no channel left.)
            if not getattr(self.request, "_disconnected", False):
                self.request.unregisterProducer()

    def write(self, data: bytes) -> None:
        self.written += len(data)
        self.request.write(data)


#: Headers of a download answer that a failure answer must not keep.
_DOWNLOAD_HEADERS = (b"etag", b"last-modified", b"accept-ranges", b"content-range", b"content-type",
                     b"content-length", b"cache-control")


@implementer(IBody)
class ObjectBody:
    """
    An L{IBody} over an object: small answers are one ranged GET (a
    Deferred), large ones stream from the store into the response as fast
    as the client takes them (L{stream}).
    """

    def __init__(self, store: ObjectStore, key: str, size: int, mtime_ns: int, redirect: Optional[str]) -> None:
        self.store = store
        self.key = key
        self.size = size
        self.mtime_ns = mtime_ns
        self.redirect = redirect
        self._closed = False

    def read(self, offset: int, count: int) -> Deferred[bytes]:
        from pypid.store.objectstore.s3 import ObjectNotFound, RangeNotSatisfiable, S3Error

        if self._closed or count <= 0:
            return succeed(b"")
        store = self.store
        d = store.read_object_range(self.key, offset, count)

        def failed(failure: Failure) -> bytes:
            if failure.check(ObjectNotFound, RangeNotSatisfiable):
                store.log.error("{key} is listed, but the object store has no such bytes: {why}",
                                key=self.key, why=failure.getErrorMessage())
                return b""
            if failure.check(S3Error):
                raise StoreUnavailable(store.s3_failed(failure.value))
            failure.raiseException()

        return d.addErrback(failed)

    def stream(self, request: Any, offset: int, count: int) -> None:
        from pypid.store.objectstore.s3 import ObjectNotFound, RangeNotSatisfiable, S3Error

        store = self.store
        self._closed = True
        whole = offset == 0 and count == self.size
        consumer = _ToRequest(request)
        state: dict[str, Any] = {"gone": False, "body": None}

        def left(failure: Failure) -> None:
            state["gone"] = True
            body = state["body"]
            if consumer.producer is not None:
                consumer.producer.stopProducing()
            elif body is not None:
                body.discard()

        request.notifyFinish().addErrback(left)

        def opened(body: Any) -> Any:
            store._s3_ok(None)
            if state["gone"]:
                body.discard()
                return None
            if body.length is not None and body.length != count:
                # Not the bytes the listing describes (shorter or longer): cut.
                body.discard()
                raise RangeNotSatisfiable(f"{self.key} has {body.info.size} bytes, not {self.size}", body.info.size)
            state["body"] = body
            return body.deliver(consumer)

        def delivered(written: Any) -> None:
            if not state["gone"]:
                request.finish()

        def failed(failure: Failure) -> None:
            if state["gone"]:
                return
            if consumer.written or getattr(request, "startedWriting", False):
                # The answer has begun: the client must see it cut short.
                if not failure.check(S3Error):
                    store.log.failure("streaming {key}", failure, key=self.key)
                else:
                    store.log.warn("download of {key} cut short: {why}", key=self.key,
                                   why=failure.getErrorMessage())
                request.loseConnection()
                return
            if failure.check(ObjectNotFound, RangeNotSatisfiable):
                store.log.error("{key} is listed, but the object store has no such bytes: {why}",
                                key=self.key, why=failure.getErrorMessage())
                _answer(request, 404, "Not Found")
            elif failure.check(S3Error):
                _answer(request, 503, store.s3_failed(failure.value))
            else:
                store.log.failure("streaming {key}", failure, key=self.key)
                _answer(request, 500, "Internal error; see the server log.")

        d: Deferred[Any] = store.s3.open(self.key, None if whole else (offset, offset + count - 1))
        d.addCallback(opened).addCallbacks(delivered, failed)

    def close(self) -> None:
        self._closed = True


def _answer(request: Any, code: int, message: str) -> None:
    """Answer a download that failed before its first byte with C{code} instead."""
    from pypid.web.errors import HTTPError, error_page

    for name in _DOWNLOAD_HEADERS:
        request.responseHeaders.removeHeader(name)
    extra = [(b"retry-after", b"5")] if code == 503 else []
    body = error_page(request, HTTPError(code, message, extra))
    if body and request.method != b"HEAD":
        request.write(body)
    request.finish()

